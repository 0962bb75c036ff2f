"""Recognition losses: re-id's label-smoothed cross-entropy + batch-hard triplet (Hermans et al. 2017),
and faces' CosFace (Wang et al. 2018: additive cosine margin, scale s)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_distance(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (B, B); clamped before the sqrt so the gradient at 0 stays finite."""
    sq = (x * x).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2 * x @ x.t()
    return d2.clamp_min(1e-12).sqrt()


def hard_triplet_loss(feat: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """For each anchor: hardest positive (farthest same id) vs hardest negative (closest other id).

    margin > 0: hinge max(0, d_ap - d_an + margin); margin == 0: soft margin log(1 + exp(d_ap - d_an)).
    Anchors whose identity has no second sample in the batch have no positive and are skipped.
    """
    d = pairwise_distance(feat)  # (B, B)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=feat.device)
    pos = same & ~eye
    has = pos.any(1) & (~same).any(1)
    if not has.any():
        return feat.sum() * 0
    d_ap = torch.where(pos, d, torch.full_like(d, -1.0)).max(1).values
    d_an = torch.where(~same, d, torch.full_like(d, float("inf"))).min(1).values
    diff = (d_ap - d_an)[has]
    return F.softplus(diff).mean() if margin == 0 else F.relu(diff + margin).mean()


def reid_loss(feat, logits, labels, margin: float, label_smoothing: float) -> dict:
    ce = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    tri = hard_triplet_loss(feat, labels, margin)
    return {"loss": ce + tri, "ce": ce, "triplet": tri}


def cosface_logits(cos: torch.Tensor, labels: torch.Tensor, scale: float, margin: float) -> torch.Tensor:
    """s · (cos θ_j − m·[j = y]) from the cosine head's output (B, C)."""
    return scale * (cos - margin * F.one_hot(labels, cos.shape[1]).to(cos.dtype))


def cosface_loss(feat, cos, labels, scale: float, margin: float) -> dict:
    ce = F.cross_entropy(cosface_logits(cos, labels, scale, margin), labels)
    return {"loss": ce, "cosface": ce}


def identity_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy on the identity label, DSS's l_id for re-id: (B, C) -> (B,)."""
    return F.cross_entropy(logits, labels, reduction="none")


def cosface_id_loss(scale: float, margin: float):
    """Per-sample CosFace loss, DSS's l_id for faces: (cos (B, C), labels (B,)) -> (B,)."""
    return lambda cos, labels: F.cross_entropy(cosface_logits(cos, labels, scale, margin), labels, reduction="none")


def trainer_losses(cfg):
    """(loss_fn(feat, logits, y) -> dict, DSS's l_id(logits, y) -> (B,)) of a trainer's `train.loss`:
    "reid" -> (CE with label smoothing + batch-hard triplet, the plain per-sample CE); "cosface" ->
    (CosFace, the per-sample CosFace loss). The trainers, the auditor and the benches share it."""
    if cfg.loss == "reid":
        return (lambda f, lg, y: reid_loss(f, lg, y, cfg.margin, cfg.label_smoothing)), identity_loss
    if cfg.loss == "cosface":
        return (lambda f, cos, y: cosface_loss(f, cos, y, cfg.cos_scale, cfg.cos_margin)), \
            cosface_id_loss(cfg.cos_scale, cfg.cos_margin)
    raise ValueError(f"params.yaml: train.loss = {cfg.loss!r}; use reid (re-id) or cosface (faces)")


def check_task_loss(cfg, face: bool, where: str) -> None:
    """A face set trains with CosFace, a re-id set with CE + triplet: `where`.loss must say so."""
    want = "cosface" if face else "reid"
    if cfg.loss != want:
        raise ValueError(f"params.yaml: {where}.loss = {cfg.loss!r} but the dataset is a "
                         f"{'face' if face else 're-id'} set; set it to {want}")
