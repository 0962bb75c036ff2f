"""The training loop every recognition model shares (re-id: reid.py, faces: face.py; paper §4.3, §5.1),
and the trainer body around it (train_encoder: the tasks differ by loss, head and evaluation).

Real only, or real + synthetic: each step takes the real P×K batch and, when the mix asks for it,
synthetic candidates drawn P×K-style from the shards (labels: the real identities they were generated
for, or new classes for novel identities); dynamic sample selection (selection.py, eq 12) decides which
candidates join the step. `share` is the synthetic fraction of the batch a step trains on: selection
keeping `ratio` of its candidates draws 1/ratio times as many, so it chooses which synthetic images a
step sees, not how many (the ladder's dss rung then differs from its control dss_random, a random choice
of the same count, by the score alone).
With share 0 the loop is the real-only loop, draw for draw.

Augmentation runs on the device on whole uint8 batches (rgsyn.data.images), the learning rate follows
torch's LinearLR warm-up (from 10 %) then CosineAnnealingLR (to 1 %), stepped per iteration. With
`train.ema` > 0 the evaluated and saved model is torch's exponential moving average of the weights
(`AveragedModel`, BatchNorm statistics averaged too), updated after every step.
"""
from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from rgsyn import distributed as dist
from rgsyn.config import MixParams, SelectionParams, TrainParams
from rgsyn.data.images import augment, load_images, normalize, resize_images
from rgsyn.data.sampler import PKSampler
from rgsyn.devices import autocast, prepare_model, resolve_device
from rgsyn.downstream.losses import loss_head, trainer_losses
from rgsyn.downstream.selection import apply_step, dss_step, n_kept, synthetic_share
from rgsyn.encoder import EncoderConfig, IdentityEncoder

LogFn = Callable[[dict, int], None]
EvaluateFn = Callable[[IdentityEncoder, object, TrainParams, torch.device], dict]  # (model, ds, cfg, device) -> metrics


class Synthetic(NamedTuple):
    """Synthetic candidates: images uint8 (M, 3, h, w) and their dataset pids (novel ones included)."""

    images: torch.Tensor
    pids: list[int]


class Mix(NamedTuple):
    images: torch.Tensor  # uint8 (M, 3, H, W) at the trainer size
    labels: torch.Tensor  # (M,) class indices (real ones first, then novel identities)
    sampler: PKSampler


def class_table(real_pids, synthetic: Synthetic | None, novel_pids=()) -> dict:
    """pid -> class index: the real identities (sorted), then any novel identities (sorted). A synthetic
    pid that is neither is an error: the shards come from another dataset."""
    table = {p: i for i, p in enumerate(sorted(set(real_pids)))}
    for p in sorted(set(novel_pids)):
        table.setdefault(p, len(table))
    if synthetic is not None:
        unknown = sorted(set(synthetic.pids) - set(table))
        if unknown:
            raise ValueError(f"synthetic shards name identities {unknown[:5]} that the real train set lacks: the "
                             "generator was cold-started on another dataset (params: downstream.mix.synthetic)")
    return table


def keep_ratio(selection: SelectionParams | None) -> float:
    """The share of the candidates a step keeps: selection's ratio, 1 without selection."""
    return selection.ratio if selection is not None and selection.mode != "off" else 1.0


def make_mix(syn: Synthetic | None, mix: MixParams | None, table: dict, cfg: TrainParams, seed: int,
             selection: SelectionParams | None = None) -> Mix | None:
    """The synthetic side of the mixed batches, or None (real only)."""
    if syn is None or mix is None or len(syn.pids) == 0 or not (mix.share > 0 or mix.curriculum):
        return None
    labels = np.array([table[p] for p in syn.pids], dtype=np.int64)
    top = max(mix.share, mix.curriculum_start, mix.curriculum_end) if mix.curriculum else mix.share
    kept = max(1, kept_ids(cfg.p, top))
    p_max = min(len(set(labels.tolist())), max(2, candidate_ids(kept, keep_ratio(selection))))
    sampler = PKSampler(labels, p_max, cfg.k, seed + 7919)  # its own stream: the real draws stay as without
    return Mix(resize_images(syn.images, cfg.height, cfg.width), torch.from_numpy(labels), sampler)


def kept_ids(p_real: int, share: float) -> int:
    """Synthetic identities a step trains on: share s of the trained batch ⇒ p_real·s/(1−s)."""
    return round(p_real * share / max(1e-6, 1 - share))


def candidate_ids(kept: int, ratio: float) -> int:
    """Identities to draw so that keeping `ratio` of their images keeps `kept` identities' worth."""
    return kept if ratio >= 1.0 or ratio <= 0.0 else math.ceil(kept / ratio - 1e-9)


def n_synthetic_ids(progress: float, mix: MixParams, p_real: int, p_max: int, ratio: float = 1.0) -> int:
    """Synthetic identities in this step's candidates: `kept_ids` of them are kept, drawn from 1/ratio
    times as many (ratio: the selection's keep ratio)."""
    s = synthetic_share(progress, mix.curriculum_start, mix.curriculum_end) if mix.curriculum else mix.share
    return min(p_max, candidate_ids(kept_ids(p_real, s), ratio))


def schedule(opt: torch.optim.Optimizer, cfg: TrainParams, iters: int) -> SequentialLR:
    """Per-iteration warm-up from 10 % of cfg.lr over warmup_epochs, then cosine to 1 %."""
    warm, total = cfg.warmup_epochs * iters, cfg.epochs * iters
    return SequentialLR(opt, [LinearLR(opt, 0.1, 1.0, total_iters=max(1, warm)),
                              CosineAnnealingLR(opt, T_max=max(1, total - warm), eta_min=0.01 * cfg.lr)],
                        milestones=[warm])


def make_optimizer(model: torch.nn.Module, cfg: TrainParams) -> torch.optim.Optimizer:
    """Adam (re-id, BoT) or SGD with momentum (faces, the paper's CosFace recipe), weight decay cfg's."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"params.yaml: train.optimizer = {cfg.optimizer!r}; use adam or sgd")


def fit(model: torch.nn.Module, opt: torch.optim.Optimizer, images: torch.Tensor, labels: np.ndarray,
        cfg: TrainParams, seed: int, loss_fn, *, id_loss=None, mix: Mix | None = None,
        mix_params: MixParams | None = None, selection: SelectionParams | None = None,
        device: torch.device | str = "cpu", log: LogFn | None = None, progress: bool = True,
        compute=None) -> dict:
    """Train `model` (train mode returns (feat, logits)) on uint8 images (N, 3, H, W) with class labels
    (N,); loss_fn(feat, logits, y, n_syn=0) -> {"loss", ...}, n_syn: the batch's last rows that are
    synthetic (mixed steps pass it); id_loss(logits, y) -> (B,) is DSS's l_id.
    `compute` (params' compute section): autocast precision, channels-last, torch.compile of the plain
    step's forward (the selection's lookahead calls the module itself). Returns the DSS totals and the
    training time.

    Under several processes (rgsyn.distributed) every process draws the same global batches, computes
    its slice of the rows and all-reduces the gradients; the real-only step's loss is computed on the
    all-gathered rows, so hard mining sees the global batch; a selection step selects among each
    process's own candidates."""
    precision = compute.precision if compute else "fp32"
    if dist.world()[1] > 1 and torch.device(device).type == "cuda":  # BatchNorm over the global batch
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # keeps the parameter objects
    forward = prepare_model(model, compute, device) if compute else model
    params = list(model.parameters())
    sync = (lambda: dist.sync_grads(params)) if dist.world()[1] > 1 else None
    sampler = PKSampler(labels, cfg.p, cfg.k, seed)
    iters = cfg.iters_per_epoch or len(sampler)
    sched = schedule(opt, cfg, iters)
    # the averaged weights (BatchNorm statistics too) are what is evaluated and saved
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True) if cfg.ema else None
    syn_batches = mix.sampler.batches(cfg.epochs * iters) if mix else None
    sel = selection or SelectionParams("off", 1.0, "head", "real")
    g = torch.Generator().manual_seed(seed)
    pick = torch.Generator().manual_seed(seed + 104729)  # selection mode "random": its own stream
    labels_t = torch.from_numpy(labels)
    model.train()
    t0 = time.time()
    totals = {"dss_kept": 0, "dss_candidates": 0}
    bar = tqdm(range(cfg.epochs), desc=f"train seed {seed}", disable=not progress, leave=False)
    for epoch in bar:
        sums: dict[str, float] = {}
        deltas, kept_mask, share = [], [], 0.0
        for it, idx in enumerate(sampler.batches(iters)):
            # the global batch's augmentations, drawn the same in every process; each computes its rows
            x = augment(normalize(images[idx].to(device)), g, cfg.flip, cfg.pad, cfg.random_erasing)
            y = labels_t[idx].to(device)
            rows = dist.local_rows(len(idx))
            n_ids = n_synthetic_ids((epoch + it / iters) / cfg.epochs, mix_params, cfg.p, mix.sampler.p,
                                    keep_ratio(sel)) if mix else 0
            sidx = next(syn_batches)[:n_ids * cfg.k] if mix else []
            if len(sidx) == 0:  # the real-only step
                with autocast(device, precision):
                    feat, logits = forward(x[rows])
                    out = loss_fn(dist.gather_rows(feat), dist.gather_rows(logits), y)
                losses = apply_step(opt, out, sync)
            else:
                sx = augment(normalize(mix.images[sidx].to(device)), g, cfg.flip, cfg.pad, cfg.random_erasing)
                srows = dist.local_rows(len(sidx))
                n_real = len(y[rows])  # the batch's rows are real first, then synthetic
                mixed_loss = lambda f, lg, yy: loss_fn(f, lg, yy, n_syn=len(yy) - n_real)  # noqa: E731
                with autocast(device, precision):
                    r = dss_step(model, opt, x[rows], y[rows], sx[srows], mix.labels[sidx][srows].to(device),
                                 ratio=sel.ratio, mode=sel.mode, loss_fn=mixed_loss, scope=sel.scope, id_loss=id_loss,
                                 lookahead=sel.lookahead, sync=sync, generator=pick)
                losses = r["losses"]
                totals["dss_kept"] += r["kept"]
                totals["dss_candidates"] += r["candidates"]
                kept = n_kept(len(sidx), keep_ratio(sel))  # over all processes
                share += kept / (kept + len(idx)) / iters
                if r["delta"] is not None:
                    deltas.append(r["delta"])
                    m = torch.zeros(r["candidates"], dtype=torch.bool)
                    m[r["keep"]] = True
                    kept_mask.append(m)
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v / iters
        bar.set_postfix(loss=f"{sums['loss']:.3f}")
        if log:
            log({**{f"loss/{k}": v for k, v in sums.items()}, "schedule/lr": opt.param_groups[0]["lr"],
                 **({"selection/synthetic_share": share} if mix else {}),
                 **{f"selection/{k}": v for k, v in selection_stats(deltas, kept_mask).items()}}, epoch)
    dist.sync_buffers(model)  # one set of BatchNorm running statistics for evaluation and saving
    if ema is not None:
        model.load_state_dict(ema.module.state_dict())
    out = {"train_seconds": time.time() - t0}
    if mix:
        out.update(totals, synthetic_images=len(mix.labels))
    return out


def train_encoder(ds, cfg: TrainParams, seed: int, evaluate: EvaluateFn, log: LogFn | None = None,
                  progress: bool = True, synthetic: Synthetic | None = None, mix: MixParams | None = None,
                  selection: SelectionParams | None = None, novel_pids=(), compute=None) -> tuple[IdentityEncoder, dict]:
    """The body of every task's trainer (re-id: reid.train_reid, faces: face.train_face): classes of
    `ds.train` (+ `novel_pids`), an encoder with the head of `cfg.loss`, `fit` on the real images (+
    `synthetic` per `mix`/`selection`), then `evaluate`, the task's own protocol on the dataset's test
    data. The task differs by its loss and head (both follow `cfg.loss`) and its evaluation alone.

    Returns (model in eval mode, evaluation metrics + fit's: the DSS totals with synthetic data)."""
    device = resolve_device(cfg.device)
    torch.manual_seed(seed)
    table = class_table([r.pid for r in ds.train], synthetic, novel_pids)
    labels = np.array([table[r.pid] for r in ds.train], dtype=np.int64)
    images = load_images([r.path for r in ds.train], cfg.height, cfg.width)  # (N, 3, H, W) uint8
    model = IdentityEncoder(EncoderConfig(cfg.backbone, len(table), cfg.embed_dim, cfg.height, cfg.width,
                                          head=loss_head(cfg.loss)), cfg.pretrained_path).to(device)
    loss_fn, id_loss = trainer_losses(cfg, mix.smoothing if mix else None)  # L and DSS's l_id of cfg.loss
    out = fit(model, make_optimizer(model, cfg), images, labels, cfg, seed, loss_fn, id_loss=id_loss,
              mix=make_mix(synthetic, mix, table, cfg, seed, selection), mix_params=mix, selection=selection,
              device=device, log=log, progress=progress, compute=compute)
    return model.eval(), {**evaluate(model, ds, cfg, device), **out}


def selection_stats(deltas: list[torch.Tensor], kept: list[torch.Tensor]) -> dict:
    """One epoch of DSS: kept/dropped counts and the Δl distribution (all, kept, dropped)."""
    if not deltas:
        return {}
    d, m = torch.cat(deltas).float(), torch.cat(kept)
    q = torch.quantile(d, torch.tensor([0.1, 0.5, 0.9]))
    out = {"kept": int(m.sum()), "dropped": int((~m).sum()), "delta_mean": d.mean().item(),
           "delta_std": d.std().item() if len(d) > 1 else 0.0, "delta_p10": q[0].item(),
           "delta_p50": q[1].item(), "delta_p90": q[2].item()}
    if m.any():
        out["delta_kept_mean"] = d[m].mean().item()
    if (~m).any():
        out["delta_dropped_mean"] = d[~m].mean().item()
    return out


NOT_METRICS = ("seed", "train_seconds", "dss_kept", "dss_candidates", "synthetic_images")


def aggregate(per_seed: list[dict], keys=None) -> dict:
    """Mean and sample std (ddof=1) over seeds of every evaluation metric (default: the numeric keys
    all seeds share, bookkeeping aside), plus the per-seed values."""
    out = {"n_seeds": len(per_seed), "per_seed": per_seed}
    if keys is None:
        keys = [k for k, v in per_seed[0].items() if isinstance(v, (int, float)) and k not in NOT_METRICS
                and not k.endswith("_std") and all(k in m for m in per_seed)]
    for k in keys:
        v = np.array([m[k] for m in per_seed], dtype=float)
        out[f"{k}_mean"] = float(v.mean())
        out[f"{k}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return out
