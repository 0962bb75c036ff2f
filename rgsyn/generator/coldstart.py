"""The `coldstart` stage (paper §4.1): adapt a pretrained DiT to the target identities.

The label table is replaced by one shared, zero-initialised table (one row per train identity + the
null row), the backbone stays frozen, and only the table learns from the denoising loss on the real
train images. The result is a small file (the table) beside a pointer to the pretrained folder.
Identity consistency is checked with the reference encoder: for samples conditioned on identity y,
is the nearest real identity prototype y? (chance = 1 / #identities).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from rgsyn.config import Params, params_hash, to_dict
from rgsyn.data.images import load_images
from rgsyn.data.layouts import read_index
from rgsyn.devices import resolve_device
from rgsyn.downstream.reid import relabel
from rgsyn.encoder import IdentityEncoder, extract_features, git_sha, load_encoder
from rgsyn.generator.dit import DiTBundle, label_tables, load_dit, reset_class_embedding
from rgsyn.generator.sampler import Sampler
from rgsyn.generator.train import train_denoiser, trainable
from rgsyn.generator.viz import save_grid

TABLE_FILE = "label_table.safetensors"
META_FILE = "coldstart.json"


def image_size(bundle: DiTBundle) -> tuple[int, int]:
    """(H, W) of the images the generator makes: packed pixels, or latents through the VAE (x8 for DiT's)."""
    s = bundle.transformer.config.sample_size
    if bundle.vae is not None:
        f = 2 ** (len(bundle.vae.config.block_out_channels) - 1)
        return s * f, s * f
    return s * bundle.pack, s


def save_coldstart(bundle: DiTBundle, out_dir: str | Path, pretrained: str, pids: list[int], **meta) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = label_tables(bundle.transformer)[0].embedding_table.weight
    save_file({"embedding_table": table.detach().cpu().contiguous()}, str(out / TABLE_FILE))
    (out / META_FILE).write_text(json.dumps({"pretrained": str(pretrained), "pids": pids, "git_sha": git_sha(),
                                             **meta}, indent=1, default=str))
    return out


def load_coldstart(path: str | Path) -> tuple[DiTBundle, list[int]]:
    """-> (bundle with the target label table in place, class index -> dataset pid)."""
    path = Path(path)
    if not (path / META_FILE).exists():
        raise FileNotFoundError(f"{path / META_FILE} not found: run the coldstart stage (dvc repro coldstart)")
    meta = json.loads((path / META_FILE).read_text())
    bundle = load_dit(meta["pretrained"])
    reset_class_embedding(bundle.transformer, len(meta["pids"]))
    with torch.no_grad():
        label_tables(bundle.transformer)[0].embedding_table.weight.copy_(load_file(str(path / TABLE_FILE))["embedding_table"])
    return bundle, meta["pids"]


@torch.no_grad()
def generate(bundle: DiTBundle, labels: torch.Tensor, steps: int, guidance: float, seed: int) -> torch.Tensor:
    """uint8 images (N, 3, H, W) for `labels` with deterministic DDIM (eta 0)."""
    return Sampler(bundle, steps, eta=0.0, guidance=guidance).images(labels, seed)


@torch.no_grad()
def identity_consistency(encoder: IdentityEncoder, real: torch.Tensor, real_labels: torch.Tensor,
                         fake: torch.Tensor, fake_labels: torch.Tensor) -> dict:
    """Top-1 of nearest real-identity prototype vs the conditioning label (reference-encoder space)."""
    device = next(encoder.parameters()).device
    n = int(real_labels.max()) + 1
    real_f = extract_features(encoder, real, device=device)
    protos = F.normalize(torch.zeros(n, encoder.dim).index_add_(0, real_labels, real_f), dim=1)
    sim = extract_features(encoder, fake, device=device) @ protos.t()  # (M, C)
    top1 = (sim.argmax(1) == fake_labels).float().mean().item()
    own = sim.gather(1, fake_labels[:, None]).mean().item()
    return {"top1": top1, "chance": 1.0 / n, "top1_over_chance": top1 * n, "cos_to_own_prototype": own}


def run_coldstart(params: Params, log=None, progress: bool = True) -> dict:
    c = params.coldstart
    device = resolve_device(c.device)
    bundle = load_dit(c.pretrained)
    ds = read_index(params.data.index)
    labels, table = relabel([r.pid for r in ds.train])
    labels = torch.from_numpy(labels)
    h, w = image_size(bundle)
    images = load_images([r.path for r in ds.train], h, w)  # (N, 3, H, W) uint8
    reset_class_embedding(bundle.transformer, len(table))
    bundle.transformer.to(device)
    encoder = load_encoder(params.reference.out_dir)
    eval_labels = torch.arange(len(table)).repeat_interleave(c.eval_per_id)
    before = identity_consistency(encoder, images, labels,
                                  generate(bundle, eval_labels, c.sample_steps, c.guidance, seed=10_000), eval_labels)
    t0 = time.time()
    ema = train_denoiser(bundle, images, labels, steps=c.steps, batch=c.batch, lr=c.lr, weight_decay=0.0,
                         warmup=c.warmup, ema_decay=c.ema_decay, label_dropout=c.label_dropout, seed=c.seed,
                         flip=c.flip, ckpt_dir=Path(c.out_dir) / "train_state", ckpt_every=c.ckpt_every,
                         config=to_dict(c), log=log, progress=progress, device=device)
    ema.copy_to(trainable(bundle.transformer))
    train_s = time.time() - t0
    fake = generate(bundle, eval_labels, c.sample_steps, c.guidance, seed=10_000)
    after = identity_consistency(encoder, images, labels, fake, eval_labels)
    save_coldstart(bundle, c.out_dir, c.pretrained, sorted(table), steps=c.steps, params_hash=params_hash(c))
    rows = [torch.cat([images[labels == i][:4], fake[eval_labels == i][:4]]) for i in range(min(c.grid_ids, len(table)))]
    grid = save_grid(rows, Path("reports") / "coldstart_samples.png")
    return {"before": before, "after": after, "train_seconds": train_s, "grid": str(grid)}
