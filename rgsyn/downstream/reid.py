"""The downstream re-id trainer (paper §5.1): timm backbone, BNNeck, CE + hard-mining triplet, P×K
batches, Adam with weight decay 5e-4, evaluated on query/gallery with the Market-1501 protocol.

For now it trains on real images only; its seed-0 model is the reference encoder of later stages.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from rgsyn.config import TrainParams
from rgsyn.data.images import augment, load_images, normalize
from rgsyn.data.records import ReidDataset
from rgsyn.data.sampler import PKSampler
from rgsyn.devices import resolve_device
from rgsyn.downstream.losses import reid_loss
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


def train_reid(ds: ReidDataset, cfg: TrainParams, seed: int, log: LogFn | None = None,
               progress: bool = True) -> tuple[IdentityEncoder, dict]:
    """Train on `ds.train`, evaluate on `ds.query`/`ds.gallery`; returns (model in eval mode, metrics)."""
    device = resolve_device(cfg.device)
    torch.manual_seed(seed)
    labels, _ = relabel([r.pid for r in ds.train])
    images = load_images([r.path for r in ds.train], cfg.height, cfg.width)  # (N, 3, H, W) uint8
    model = IdentityEncoder(EncoderConfig(cfg.backbone, int(labels.max()) + 1, cfg.embed_dim,
                                          cfg.height, cfg.width), cfg.pretrained_path).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler = PKSampler(labels, cfg.p, cfg.k, seed)
    iters = cfg.iters_per_epoch or len(sampler)
    g = torch.Generator().manual_seed(seed)
    labels_t = torch.from_numpy(labels)
    model.train()
    t0 = time.time()
    bar = tqdm(range(cfg.epochs), desc=f"train seed {seed}", disable=not progress, leave=False)
    for epoch in bar:
        sums = {"loss": 0.0, "ce": 0.0, "triplet": 0.0}
        for it, idx in enumerate(sampler.batches(iters)):
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch + it / iters, cfg)
            x = augment(normalize(images[idx].to(device)), g, cfg.flip, cfg.pad, cfg.random_erasing)
            feat, logits = model(x)
            out = reid_loss(feat, logits, labels_t[idx].to(device), cfg.margin, cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()
            for k in sums:
                sums[k] += out[k].item() / iters
        bar.set_postfix(loss=f"{sums['loss']:.3f}")
        if log:
            log({**sums, "lr": opt.param_groups[0]["lr"]}, epoch)
    metrics = evaluate_model(model, ds, cfg, device)
    metrics["train_seconds"] = time.time() - t0
    return model.eval(), metrics


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
