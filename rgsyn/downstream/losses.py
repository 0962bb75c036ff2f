"""Recognition losses: re-id's label-smoothed cross-entropy + batch-hard triplet (Hermans et al. 2017),
and faces' CosFace (Wang et al. 2018: additive cosine margin, scale s).

A mixed batch's last `n_syn` rows are synthetic; their identity loss may smooth the label by its own ε
(`downstream.mix.smoothing`): a generated image is only as much its identity as the generator made
it, and LSRO (Zheng et al., ICCV 2017) trained GAN samples on the uniform target (ε = 1)."""
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


def smoothed_ce(logits: torch.Tensor, labels: torch.Tensor, eps: float, n_syn: int = 0,
                eps_syn: float | None = None) -> torch.Tensor:
    """Mean cross-entropy with label smoothing ε on the real rows and `eps_syn` on the last n_syn rows:
    (1 − ε_i)·(−log p_i[y_i]) + ε_i·mean_j(−log p_ij), torch's definition. One ε: torch's own call."""
    if n_syn == 0 or eps_syn is None or eps_syn == eps:
        return F.cross_entropy(logits, labels, label_smoothing=eps)
    logp = F.log_softmax(logits.float(), dim=1)  # (B, C)
    nll = -logp.gather(1, labels[:, None])[:, 0]  # (B,)
    e = torch.full_like(nll, eps)
    e[len(e) - n_syn:] = eps_syn
    return ((1 - e) * nll - e * logp.mean(1)).mean()


def reid_loss(feat, logits, labels, margin: float, label_smoothing: float, n_syn: int = 0,
              syn_smoothing: float | None = None) -> dict:
    ce = smoothed_ce(logits, labels, label_smoothing, n_syn, syn_smoothing)
    tri = hard_triplet_loss(feat, labels, margin)
    return {"loss": ce + tri, "ce": ce, "triplet": tri}


def cosface_logits(cos: torch.Tensor, labels: torch.Tensor, scale: float, margin: float) -> torch.Tensor:
    """s · (cos θ_j − m·[j = y]) from the cosine head's output (B, C)."""
    return scale * (cos - margin * F.one_hot(labels, cos.shape[1]).to(cos.dtype))


def cosface_loss(feat, cos, labels, scale: float, margin: float, n_syn: int = 0,
                 syn_smoothing: float | None = None) -> dict:
    ce = smoothed_ce(cosface_logits(cos, labels, scale, margin), labels, 0.0, n_syn, syn_smoothing)
    return {"loss": ce, "cosface": ce}


def identity_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy on the identity label, DSS's l_id for re-id: (B, C) -> (B,)."""
    return F.cross_entropy(logits, labels, reduction="none")


def cosface_id_loss(scale: float, margin: float):
    """Per-sample CosFace loss, DSS's l_id for faces: (cos (B, C), labels (B,)) -> (B,)."""
    return lambda cos, labels: F.cross_entropy(cosface_logits(cos, labels, scale, margin), labels, reduction="none")


LOSS_HEADS = {"reid": "linear", "cosface": "cosine"}  # train.loss -> the classifier head its logits come from


def loss_head(loss: str) -> str:
    """The encoder head a `train.loss` trains: CE + triplet on the linear (BNNeck) head's logits, CosFace
    on the cosine head's. The trainers, the auditor and the benches build their encoders by it."""
    if loss not in LOSS_HEADS:
        raise ValueError(f"params.yaml: train.loss = {loss!r}; use reid (re-id) or cosface (faces)")
    return LOSS_HEADS[loss]


def trainer_losses(cfg, syn_smoothing: float | None = None):
    """(loss_fn(feat, logits, y, n_syn=0) -> dict, DSS's l_id(logits, y) -> (B,)) of a trainer's
    `train.loss`: "reid" -> (CE with label smoothing + batch-hard triplet, the plain per-sample CE);
    "cosface" -> (CosFace, the per-sample CosFace loss). `syn_smoothing`: the label smoothing of the
    last n_syn rows (None: as the real rows). The trainers, the auditor and the benches share it."""
    if cfg.loss == "reid":
        return (lambda f, lg, y, n_syn=0: reid_loss(f, lg, y, cfg.margin, cfg.label_smoothing, n_syn,
                                                    syn_smoothing)), identity_loss
    if cfg.loss == "cosface":
        return (lambda f, cos, y, n_syn=0: cosface_loss(f, cos, y, cfg.cos_scale, cfg.cos_margin, n_syn,
                                                        syn_smoothing)), \
            cosface_id_loss(cfg.cos_scale, cfg.cos_margin)
    raise ValueError(f"params.yaml: train.loss = {cfg.loss!r}; use reid (re-id) or cosface (faces)")


def check_task_loss(cfg, face: bool, where: str) -> None:
    """A face set trains with CosFace, a re-id set with CE + triplet: `where`.loss must say so."""
    want = "cosface" if face else "reid"
    if cfg.loss != want:
        raise ValueError(f"params.yaml: {where}.loss = {cfg.loss!r} but the dataset is a "
                         f"{'face' if face else 're-id'} set; set it to {want}")
