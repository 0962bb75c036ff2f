"""DiT in diffusers format: build, load (offline), save, class-embedding reset, pixel packing.

A checkpoint is a folder as `DiTPipeline.save_pretrained` writes it (`transformer/`, optional `vae/`,
`scheduler/`) or a bare `DiTTransformer2DModel` folder. With a VAE the model works on AutoencoderKL
latents (x 0.18215, as DiT-XL/2); without one it works in pixel space in [-1, 1].

diffusers' DiT is square-only (its unpatchify assumes H == W), while re-id crops are 2:1. Pixel space
therefore *packs* an image: (3, 2H, W) -> (6, H, W) by moving each vertical pixel pair into channels
(a lossless space-to-depth), so a 64x32 person becomes a 32x32 six-channel square.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, DiTTransformer2DModel
from diffusers.models.embeddings import LabelEmbedding
from torch import nn

VAE_SCALE = 0.18215

# sizes of DiTTransformer2DModel; `xl2` is facebook/DiT-XL-2-256 (latent 32x32x4, learned sigma)
PRESETS = {
    "tiny": dict(num_layers=2, num_attention_heads=2, attention_head_dim=16, patch_size=4),
    "small": dict(num_layers=8, num_attention_heads=3, attention_head_dim=64, patch_size=4),
    "xl2": dict(num_layers=28, num_attention_heads=16, attention_head_dim=72, patch_size=2),
}


@dataclass
class DiTBundle:
    """What a checkpoint folder holds, ready to use."""

    transformer: DiTTransformer2DModel
    scheduler: DDPMScheduler  # the noise schedule constants; samplers in rgsyn.generator.sampler
    vae: AutoencoderKL | None
    pack: int  # pixel space: vertical space-to-depth factor (1 = none)

    def __post_init__(self):
        disable_label_dropout(self.transformer)  # whatever built the model, rgsyn never drops labels implicitly

    def to(self, device) -> "DiTBundle":
        """Move the transformer and the VAE (latent-space models decode and encode through it)."""
        self.transformer.to(device)
        if self.vae is not None:
            self.vae.to(device)
        return self

    @property
    def channels(self) -> int:
        return self.transformer.config.in_channels

    @property
    def learned_sigma(self) -> bool:
        return self.transformer.config.out_channels == 2 * self.transformer.config.in_channels

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        s = self.transformer.config.sample_size
        return (self.channels, s, s)


def build_dit(preset: str, sample_size: int, in_channels: int, num_classes: int,
              learned_sigma: bool = False, **overrides) -> DiTTransformer2DModel:
    if preset not in PRESETS:
        raise ValueError(f"unknown DiT preset {preset!r}; valid: {sorted(PRESETS)}")
    kw = {**PRESETS[preset], **overrides}
    return DiTTransformer2DModel(in_channels=in_channels, out_channels=in_channels * (2 if learned_sigma else 1),
                                 sample_size=sample_size, num_embeds_ada_norm=num_classes, **kw)


def make_scheduler(prediction_type: str = "epsilon", beta_schedule: str = "linear",
                   num_train_timesteps: int = 1000) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                         prediction_type=prediction_type, clip_sample=False)


def load_dit(path: str | Path, pack: int | None = None) -> DiTBundle:
    """Load a diffusers DiT checkpoint from a local folder (never the network)."""
    path = Path(path)
    if (path / "transformer" / "config.json").exists():
        root, sub = path, "transformer"
    elif (path / "config.json").exists():
        root, sub = path, None
    else:
        raise FileNotFoundError(
            f"{path}: no DiT checkpoint here: expected {path}/transformer/config.json (a DiTPipeline folder, e.g. "
            "facebook/DiT-XL-2-256 downloaded beforehand) or {path}/config.json (a DiTTransformer2DModel folder). "
            "Set the checkpoint path in params.yaml.")
    kw = {"local_files_only": True}
    transformer = (DiTTransformer2DModel.from_pretrained(root, subfolder=sub, **kw) if sub
                   else DiTTransformer2DModel.from_pretrained(root, **kw)).float()
    vae = AutoencoderKL.from_pretrained(root, subfolder="vae", **kw) if (root / "vae").exists() else None
    sched_dir = root / "scheduler"
    scheduler = (DDPMScheduler.from_pretrained(root, subfolder="scheduler", **kw) if sched_dir.exists()
                 else make_scheduler())
    meta = root / "rgsyn.json"
    if pack is None:
        pack = json.loads(meta.read_text()).get("pack", 1) if meta.exists() else 1
    if vae is not None and pack != 1:
        raise ValueError(f"{path}: pixel packing ({pack}) applies to pixel space only, but a VAE is present")
    return DiTBundle(transformer.eval(), scheduler, vae, pack)


def save_dit(bundle: DiTBundle, path: str | Path, **meta) -> Path:
    """Write the DiTPipeline folder layout (transformer/, scheduler/, vae/) + rgsyn.json provenance."""
    path = Path(path)
    # a fresh model holds separate copies of tied or shared tensors (safetensors refuses aliases)
    model = DiTTransformer2DModel.from_config(bundle.transformer.config)
    model.load_state_dict(bundle.transformer.state_dict())
    model.save_pretrained(path / "transformer", safe_serialization=True)
    bundle.scheduler.save_pretrained(path / "scheduler")
    if bundle.vae is not None:
        bundle.vae.save_pretrained(path / "vae", safe_serialization=True)
    (path / "rgsyn.json").write_text(json.dumps({"pack": bundle.pack, **meta}, indent=1, default=str))
    return path


class SharedLabelEmbedding(LabelEmbedding):
    """One label table for every block; never drops labels itself.

    diffusers' LabelEmbedding drops 10 % of labels whenever the module is in train mode, separately in
    each block: that would corrupt log-probs during RL and give each block a different label. rgsyn
    does classifier-free-guidance dropout explicitly (the null label is the last row) instead.
    """

    def forward(self, labels: torch.LongTensor, force_drop_ids=None) -> torch.Tensor:
        return self.embedding_table(labels)


def tie_block_embeddings(model: DiTTransformer2DModel) -> DiTTransformer2DModel:
    """Make every block use block 0's timestep + label embedder, as the original DiT does.

    facebook/DiT-XL-2-256 has one embedder; its diffusers conversion holds identical copies in each
    block. Training our prior tied keeps that structure, so one shared target table (cold start)
    speaks the same language to every block. save_dit writes the copies back out untied.
    """
    emb = model.transformer_blocks[0].norm1.emb
    for blk in model.transformer_blocks:
        blk.norm1.emb = emb
    return model


def disable_label_dropout(model: DiTTransformer2DModel) -> DiTTransformer2DModel:
    """Stop diffusers' per-block label dropout (it fires in train mode, differently in every block).

    The null row stays (it was sized at construction); rgsyn drops labels itself where it trains
    for guidance, and never while sampling or scoring log-probs.
    """
    for table in label_tables(model):
        table.dropout_prob = 0.0
    return model


def label_tables(model: DiTTransformer2DModel) -> list[nn.Module]:
    return [blk.norm1.emb.class_embedder for blk in model.transformer_blocks]


def reset_class_embedding(model: DiTTransformer2DModel, num_classes: int,
                          rows: torch.Tensor | None = None) -> DiTTransformer2DModel:
    """Replace every block's label table by one shared table of num_classes + 1 rows (the last row is the
    null label for guidance), zero-initialised (paper §4.1) or a copy of `rows` (num_classes + 1, D);
    freeze everything else."""
    dim = label_tables(model)[0].embedding_table.embedding_dim
    shared = SharedLabelEmbedding(num_classes, dim, dropout_prob=0.1)  # 0.1 only sizes the null row
    if rows is None:
        nn.init.zeros_(shared.embedding_table.weight)
    elif tuple(rows.shape) != (num_classes + 1, dim):
        raise ValueError(f"reset_class_embedding: rows of shape {tuple(rows.shape)}; "
                         f"expected ({num_classes + 1}, {dim})")
    else:
        with torch.no_grad():
            shared.embedding_table.weight.copy_(rows)
    shared.to(next(model.parameters()).device)
    model.requires_grad_(False)
    for blk in model.transformer_blocks:
        blk.norm1.emb.class_embedder = shared
    shared.requires_grad_(True)
    model.register_to_config(num_embeds_ada_norm=num_classes)
    return model


def null_label(model: DiTTransformer2DModel) -> int:
    """Index of the unconditional row (diffusers' convention: the row after the last class)."""
    return label_tables(model)[0].num_classes


def pack(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, C, f*H, W) -> (B, f*C, H, W): every vertical run of `factor` pixels becomes channels."""
    if factor == 1:
        return x
    b, c, h, w = x.shape
    return x.view(b, c, h // factor, factor, w).permute(0, 3, 1, 2, 4).reshape(b, factor * c, h // factor, w)


def unpack(x: torch.Tensor, factor: int) -> torch.Tensor:
    if factor == 1:
        return x
    b, fc, h, w = x.shape
    c = fc // factor
    return x.view(b, factor, c, h, w).permute(0, 2, 3, 1, 4).reshape(b, c, h * factor, w)


def to_model_space(bundle: DiTBundle, images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (B, 3, H, W) -> what the transformer denoises (latents or packed pixels)."""
    if bundle.vae is not None:
        return bundle.vae.encode(images).latent_dist.sample() * VAE_SCALE
    return pack(images, bundle.pack)


def to_images(bundle: DiTBundle, x: torch.Tensor) -> torch.Tensor:
    """Inverse of to_model_space -> images in [-1, 1]."""
    if bundle.vae is not None:
        return bundle.vae.decode(x / VAE_SCALE).sample.clamp(-1, 1)
    return unpack(x, bundle.pack).clamp(-1, 1)
