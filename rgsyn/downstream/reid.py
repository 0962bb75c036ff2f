"""The downstream re-id trainer (paper §5.1): timm backbone, BNNeck, CE + hard-mining triplet, P×K
batches, Adam with weight decay 5e-4, evaluated on query/gallery with the Market-1501 protocol.

Real only (the reference encoder, the real-only baseline) or real + synthetic (paper §4.3): each
step takes the real P×K batch and, when `mix.share` > 0, synthetic candidates drawn P×K-style from the
shards (labels = the real identities they were generated for); dynamic sample selection
(selection.py, eq 12) decides which candidates join the step. With share 0 the loop is the real-only
loop, draw for draw.
"""
from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from rgsyn.config import MixParams, SelectionParams, TrainParams
from rgsyn.data.images import augment, load_images, normalize, resize_images
from rgsyn.data.records import ReidDataset
from rgsyn.data.sampler import PKSampler
from rgsyn.devices import resolve_device
from rgsyn.downstream.losses import reid_loss
from rgsyn.downstream.selection import apply_step, dss_step, synthetic_share
from rgsyn.encoder import EncoderConfig, IdentityEncoder, extract_features
from rgsyn.eval import reid as reid_eval

LogFn = Callable[[dict, int], None]


def lr_at(epoch: float, cfg: TrainParams) -> float:
    """Linear warm-up, then cosine decay to 1 % of the base rate."""
    if epoch < cfg.warmup_epochs:
        return cfg.lr * (0.1 + 0.9 * epoch / cfg.warmup_epochs)
    t = (epoch - cfg.warmup_epochs) / max(1, cfg.epochs - cfg.warmup_epochs)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def relabel(pids) -> tuple[np.ndarray, dict]:
    """Dataset pids -> contiguous class indices 0..C-1 (sorted pid order)."""
    table = {p: i for i, p in enumerate(sorted(set(pids)))}
    return np.array([table[p] for p in pids], dtype=np.int64), table


class Synthetic:
    """Synthetic candidates for the mixed batches: images uint8 (M, 3, h, w) and their dataset pids."""

    def __init__(self, images: torch.Tensor, pids):
        self.images, self.pids = images, [int(p) for p in pids]


class _Mix(NamedTuple):
    images: torch.Tensor  # uint8 (M, 3, H, W) at the trainer size
    labels: torch.Tensor  # (M,) class indices of the real train set
    sampler: PKSampler


def _mixer(syn: Synthetic | None, mix: MixParams | None, table: dict, cfg: TrainParams, seed: int) -> _Mix | None:
    """The synthetic side of the mixed batches, or None (real only)."""
    if syn is None or mix is None or len(syn.pids) == 0 or not (mix.share > 0 or mix.curriculum):
        return None
    unknown = sorted(set(syn.pids) - set(table))
    if unknown:
        raise ValueError(f"synthetic shards name identities {unknown[:5]} that the real train set lacks: "
                         "the generator was cold-started on another dataset (params: downstream.mix.synthetic)")
    labels = np.array([table[p] for p in syn.pids], dtype=np.int64)
    top = max(mix.share, mix.curriculum_start, mix.curriculum_end) if mix.curriculum else mix.share
    p_max = min(len(set(labels.tolist())), max(2, math.ceil(cfg.p * top / max(1e-6, 1 - top))))
    sampler = PKSampler(labels, p_max, cfg.k, seed + 7919)  # its own stream: the real draws stay as without
    return _Mix(resize_images(syn.images, cfg.height, cfg.width), torch.from_numpy(labels), sampler)


def n_synthetic_ids(progress: float, mix: MixParams, p_real: int, p_max: int) -> int:
    """Synthetic identities in this step's candidates: share s of the mixed batch ⇒ p_real·s/(1−s)."""
    s = synthetic_share(progress, mix.curriculum_start, mix.curriculum_end) if mix.curriculum else mix.share
    return min(p_max, round(p_real * s / max(1e-6, 1 - s)))


def train_reid(ds: ReidDataset, cfg: TrainParams, seed: int, log: LogFn | None = None,
               progress: bool = True, synthetic: Synthetic | None = None, mix: MixParams | None = None,
               selection: SelectionParams | None = None) -> tuple[IdentityEncoder, dict]:
    """Train on `ds.train` (+ `synthetic` per `mix`/`selection`), evaluate on `ds.query`/`ds.gallery`.

    Returns (model in eval mode, metrics). With synthetic data the metrics also hold the DSS totals
    (`dss_kept`, `dss_candidates`) and per-epoch statistics go to `log`.
    """
    device = resolve_device(cfg.device)
    torch.manual_seed(seed)
    labels, table = relabel([r.pid for r in ds.train])
    images = load_images([r.path for r in ds.train], cfg.height, cfg.width)  # (N, 3, H, W) uint8
    model = IdentityEncoder(EncoderConfig(cfg.backbone, int(labels.max()) + 1, cfg.embed_dim,
                                          cfg.height, cfg.width), cfg.pretrained_path).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler = PKSampler(labels, cfg.p, cfg.k, seed)
    iters = cfg.iters_per_epoch or len(sampler)
    mixer = _mixer(synthetic, mix, table, cfg, seed)
    syn_batches = mixer.sampler.batches(cfg.epochs * iters) if mixer else None
    sel = selection or SelectionParams("off", 1.0, "head")
    loss_fn = lambda f, lg, y: reid_loss(f, lg, y, cfg.margin, cfg.label_smoothing)  # noqa: E731
    g = torch.Generator().manual_seed(seed)
    labels_t = torch.from_numpy(labels)
    model.train()
    t0 = time.time()
    totals = {"dss_kept": 0, "dss_candidates": 0}
    bar = tqdm(range(cfg.epochs), desc=f"train seed {seed}", disable=not progress, leave=False)
    for epoch in bar:
        sums = {"loss": 0.0, "ce": 0.0, "triplet": 0.0}
        deltas, kept_mask, share = [], [], 0.0
        for it, idx in enumerate(sampler.batches(iters)):
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch + it / iters, cfg)
            x = augment(normalize(images[idx].to(device)), g, cfg.flip, cfg.pad, cfg.random_erasing)
            y = labels_t[idx].to(device)
            n_ids = n_synthetic_ids((epoch + it / iters) / cfg.epochs, mix, cfg.p, mixer.sampler.p) if mixer else 0
            sidx = next(syn_batches)[:n_ids * cfg.k] if mixer else []
            if len(sidx) == 0:  # the real-only step
                losses = apply_step(opt, loss_fn(*model(x), y))
            else:
                sx = augment(normalize(mixer.images[sidx].to(device)), g, cfg.flip, cfg.pad, cfg.random_erasing)
                r = dss_step(model, opt, x, y, sx, mixer.labels[sidx].to(device), ratio=sel.ratio, mode=sel.mode,
                             loss_fn=loss_fn, scope=sel.scope)
                losses = r["losses"]
                totals["dss_kept"] += r["kept"]
                totals["dss_candidates"] += r["candidates"]
                share += len(sidx) / (len(sidx) + len(idx)) / iters
                if r["delta"] is not None:
                    deltas.append(r["delta"])
                    m = torch.zeros(r["candidates"], dtype=torch.bool)
                    m[r["keep"]] = True
                    kept_mask.append(m)
            for k in sums:
                sums[k] += losses[k] / iters
        bar.set_postfix(loss=f"{sums['loss']:.3f}")
        if log:
            log({**sums, "lr": opt.param_groups[0]["lr"], **({"synthetic_share": share} if mixer else {}),
                 **selection_stats(deltas, kept_mask)}, epoch)
    metrics = evaluate_model(model, ds, cfg, device)
    metrics["train_seconds"] = time.time() - t0
    if mixer:
        metrics.update(totals, synthetic_images=len(mixer.labels))
    return model.eval(), metrics


def selection_stats(deltas: list[torch.Tensor], kept: list[torch.Tensor]) -> dict:
    """One epoch of DSS: kept/dropped counts and the Δl distribution (all, kept, dropped)."""
    if not deltas:
        return {}
    d, m = torch.cat(deltas).float(), torch.cat(kept)
    q = torch.quantile(d, torch.tensor([0.1, 0.5, 0.9]))
    out = {"dss_kept": int(m.sum()), "dss_dropped": int((~m).sum()), "delta_mean": d.mean().item(),
           "delta_std": d.std().item() if len(d) > 1 else 0.0, "delta_p10": q[0].item(),
           "delta_p50": q[1].item(), "delta_p90": q[2].item()}
    if m.any():
        out["delta_kept_mean"] = d[m].mean().item()
    if (~m).any():
        out["delta_dropped_mean"] = d[~m].mean().item()
    return out


def evaluate_model(model: IdentityEncoder, ds: ReidDataset, cfg: TrainParams,
                   device: torch.device | str = "cpu") -> dict:
    """Market-1501 protocol on cosine distances of the L2-normalised BNNeck features."""
    q = extract_features(model, load_images([r.path for r in ds.query], cfg.height, cfg.width),
                         cfg.eval_batch, device)
    g = extract_features(model, load_images([r.path for r in ds.gallery], cfg.height, cfg.width),
                         cfg.eval_batch, device)
    dist = (1 - q @ g.t()).numpy()  # (Q, G)
    r = reid_eval.evaluate(dist, [x.pid for x in ds.query], [x.pid for x in ds.gallery],
                           [x.camid for x in ds.query], [x.camid for x in ds.gallery])
    cmc = r["cmc"]
    return {"mAP": float(r["mAP"]), "mINP": float(r["mINP"]), "rank1": float(cmc[0]),
            "rank5": float(cmc[min(4, len(cmc) - 1)]), "rank10": float(cmc[min(9, len(cmc) - 1)])}


def aggregate(per_seed: list[dict], keys=("mAP", "rank1", "rank5", "mINP")) -> dict:
    """Mean and sample std (ddof=1) over seeds, plus the per-seed values."""
    out = {"n_seeds": len(per_seed), "per_seed": per_seed}
    for k in keys:
        v = np.array([m[k] for m in per_seed], dtype=float)
        out[f"{k}_mean"] = float(v.mean())
        out[f"{k}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return out
