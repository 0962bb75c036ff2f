"""The identity encoder: a timm backbone + BNNeck embedding + a classifier head.

Two heads: `linear` (re-id, Luo et al., "Bag of Tricks": logits = W·bn) and `cosine` (faces, CosFace:
logits = cos(W, bn), both L2-normalised; the loss adds the margin and the scale). It is the downstream
model and, once trained on the real train split, the *reference encoder* whose embeddings fill the
rewards' memory bank and the shards' `features` column.
Checkpoints describe themselves: weights in safetensors, the architecture and provenance in JSON
beside them, so a checkpoint is loaded without pickles and without the params file that made it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from rgsyn.data.images import IMAGENET_MEAN, IMAGENET_STD, normalize
from rgsyn.devices import autocast
from rgsyn.provenance import git_sha


@dataclass(frozen=True)
class EncoderConfig:
    backbone: str
    num_classes: int
    embed_dim: int  # 0 = the backbone's feature width
    height: int
    width: int
    head: str = "linear"  # linear (re-id) | cosine (CosFace)


def _backbone(name: str, height: int, width: int, pretrained_path: str = "") -> nn.Module:
    kw = {"num_classes": 0}
    if "vit" in name or "deit" in name:
        kw["img_size"] = (height, width)  # ViTs resize their position table to the re-id aspect
    if pretrained_path:
        if not Path(pretrained_path).exists():
            raise FileNotFoundError(f"backbone weights {pretrained_path} not found (params: "
                                    "<stage>.train.pretrained_path); give a local file, an rgsyn encoder folder or \"\"")
        if Path(pretrained_path).is_dir():
            return _encoder_backbone(name, Path(pretrained_path), kw)
        kw.update(pretrained=True, pretrained_cfg_overlay={"file": pretrained_path})
    return timm.create_model(name, **kw)


def _encoder_backbone(name: str, folder: Path, kw: dict) -> nn.Module:
    """The backbone of an rgsyn encoder folder (encoder.json + encoder.safetensors, e.g. the auditor
    trained on general-domain identities only): its `backbone.*` weights; the projection, BNNeck and
    classifier start fresh, as they would from an ImageNet checkpoint."""
    src = encoder_config(folder).backbone
    if src != name:
        raise ValueError(f"{folder / 'encoder.json'}: backbone {src!r}, but the trainer's backbone is {name!r}; set "
                         f"<stage>.train.backbone: {src} or point pretrained_path at a {name} checkpoint")
    model = timm.create_model(name, **kw)
    state = {k.removeprefix("backbone."): v for k, v in load_file(str(folder / "encoder.safetensors")).items()
             if k.startswith("backbone.")}
    model.load_state_dict(state)
    return model


class IdentityEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig, pretrained_path: str = ""):
        super().__init__()
        self.cfg = cfg
        self.backbone = _backbone(cfg.backbone, cfg.height, cfg.width, pretrained_path)
        width = self.backbone.num_features
        self.proj = nn.Linear(width, cfg.embed_dim) if cfg.embed_dim else nn.Identity()
        d = cfg.embed_dim or width
        self.bnneck = nn.BatchNorm1d(d)
        self.bnneck.bias.requires_grad_(False)  # BoT: no shift, so the BN feature stays centred
        self.classifier = nn.Linear(d, cfg.num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)
        if cfg.head not in HEADS:
            raise ValueError(f"encoder head {cfg.head!r}: use one of {HEADS}")

    @property
    def dim(self) -> int:
        return self.bnneck.num_features

    def forward(self, x: torch.Tensor):
        """x: normalised (B, 3, H, W). Train: (feat (B, D) for triplet, logits (B, C) for CE).
        Eval: L2-normalised BN feature (B, D), the embedding every later stage uses."""
        feat = self.proj(self.backbone(x))  # (B, D)
        bn = self.bnneck(feat)
        if self.training:
            return feat, head_logits(self.classifier, bn, self.cfg.head)
        return F.normalize(bn, dim=1)


HEADS = ("linear", "cosine")


def head_logits(classifier: nn.Linear, bn: torch.Tensor, head: str) -> torch.Tensor:
    """(B, C) logits of the BN feature (B, D): W·bn, or the cosine of both normalised (CosFace)."""
    if head == "cosine":
        return F.linear(F.normalize(bn, dim=1), F.normalize(classifier.weight, dim=1))
    return classifier(bn)


@torch.no_grad()
def extract_features(model: IdentityEncoder, images_uint8: torch.Tensor, batch: int = 256,
                     device: str | torch.device = "cpu", precision: str = "fp32") -> torch.Tensor:
    """uint8 (N, 3, H, W) -> L2-normalised features (N, D) on the CPU, in eval mode.

    Images of another size (generated ones) are resized to the encoder's input first.
    """
    was = model.training
    model.eval()
    size = (model.cfg.height, model.cfg.width)
    out = []
    for i in range(0, len(images_uint8), batch):
        x = images_uint8[i:i + batch].to(device)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x.float(), size=size, mode="bilinear", antialias=True).round().clamp(0, 255).to(torch.uint8)
        x = normalize(x)
        with autocast(device, precision):
            out.append(model(x).float().cpu())
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0, model.dim)


def differentiable_features(model: IdentityEncoder, images: torch.Tensor, views=None,
                            precision: str = "fp32") -> list[torch.Tensor]:
    """Float images in [−1, 1] (B, 3, h, w), as a generator decodes them -> the L2-normalised features
    (B, D) of each view, with gradients to the images (no uint8 rounding). The model stays in eval mode
    (BN statistics fixed); it is resized bilinearly to the encoder's input like extract_features.
    `views`: a function of the normalised batch returning its views (rgsyn.data.images.train_views);
    None = the batch itself."""
    model.eval()
    x = (images + 1) / 2  # [0, 1], what uint8 / 255 is before rounding
    size = (model.cfg.height, model.cfg.width)
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    with autocast(x.device, precision):
        return [model(v).float() for v in (views(x) if views else [x])]


def save_encoder(model: IdentityEncoder, path: str | Path, **meta) -> Path:
    """Write `path`/encoder.safetensors + encoder.json (config, step, git sha, anything in `meta`)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(path / "encoder.safetensors"))
    (path / "encoder.json").write_text(json.dumps({"config": asdict(model.cfg), "git_sha": git_sha(), **meta},
                                                  indent=1, default=str))
    return path


def encoder_config(path: str | Path) -> EncoderConfig:
    """The architecture of an rgsyn encoder folder, from its encoder.json."""
    meta_file = Path(path) / "encoder.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"{meta_file} not found: not an rgsyn encoder checkpoint (encoder.json + "
                                "encoder.safetensors; the `reference` stage writes one: dvc repro reference)")
    return EncoderConfig(**json.loads(meta_file.read_text())["config"])


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> IdentityEncoder:
    path = Path(path)
    model = IdentityEncoder(encoder_config(path))
    model.load_state_dict(load_file(str(path / "encoder.safetensors")))
    return model.to(device).eval()
