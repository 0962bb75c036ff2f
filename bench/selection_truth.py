"""Selection where the right answer is known (issue 41 item 4): which candidates does eq. 12 keep when a
known share of their labels is wrong?

python bench/selection_truth.py [--seeds 0,1,2,3,4] [--q 0.3] [--batches 20] [--epochs 10] [--lookahead real|mixed]
                               [--out FILE]

The candidate pool is the renderer's truth (rgsyn.data.procedural.truth, salt 0): `--per-id` new images
of every train identity of the embedded set, of which a share q (`--q`, exactly round(q·N) rows, per
seed) carry the label of another train identity drawn uniformly. Everything else is the trainer's: per
seed a model of `downstream.train` is trained on the real train set only (`fit`, `--epochs` epochs of
the trainer's schedule, from `--pretrained` or the params' start), then, at that one model state,
`--batches` steps are drawn as `fit` draws them (the real P×K batch augmented, the candidates drawn
P×K-style by `make_mix`'s sampler over the pool's labels, as many as `n_synthetic_ids` gives at the
keep ratio `downstream.selection.ratio`; the trainer's loss, l_id and mixed-batch loss) and every mode
scores the same candidates: `exact` (eq. 12's virtual step), `fast` (the first-order score at
`downstream.selection.scope`), both with lookahead `downstream.selection.lookahead`, and `random`
(the control: uniform draws, what dss_step does). Each keeps `select`'s k candidates.

Label precision: the share of rows whose label is their true identity. Per seed and mode, the kept
rows' precision over all batches is paired with the candidates' (what a step draws; in expectation
the pool's 1 − q); also the ROC-AUC of −Δl for "label correct" over all candidates (0.5: the score does
not see the swap). Prints a markdown table (means over seeds, 95 % t-intervals, rgsyn.stats.paired_t
for the differences) and writes the JSON to --out. Noise-free in the sense that matters: no mAP, no
evaluation set, the right answer per row is known.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.stats as st
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selection import agree  # noqa: E402  (bench/selection.py: mean ± s.e., min)

from rgsyn.config import load_params  # noqa: E402
from rgsyn.data.images import augment, load_images, normalize  # noqa: E402
from rgsyn.data.sampler import PKSampler  # noqa: E402
from rgsyn.downstream.losses import loss_head, trainer_losses  # noqa: E402
from rgsyn.downstream.selection import _scoring_input, delta_exact, delta_fast, encoder_split, select  # noqa: E402
from rgsyn.downstream.trainer import (Synthetic, class_table, fit, keep_ratio, make_mix, make_optimizer,  # noqa: E402
                                      n_synthetic_ids)
from rgsyn.encoder import EncoderConfig, IdentityEncoder  # noqa: E402
from rgsyn.stats import paired_t, roc_auc  # noqa: E402

MODES = ("exact", "fast", "random")
# Scorer(x, y, n_real) -> Δl (S,) of the candidates x[n_real:]; smaller is kept
Scorer = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
# Draw() -> (x, y, n_real, correct (S,) bool: the candidate's label is its true identity[, seen (S,) bool:
# its label is among the step's real rows' labels])
Draw = Callable[[], tuple]


# ------------------------------------------------------------------------------------ bookkeeping
def swap_labels(pids, q: float, rng: np.random.Generator) -> tuple[list[int], np.ndarray]:
    """Relabel exactly round(q·N) rows, chosen uniformly, to another identity of `pids` drawn uniformly
    -> (the labels, swapped (N,) bool). Needs at least two identities."""
    pids = np.asarray(pids)
    ids = np.unique(pids)
    if len(ids) < 2 and q > 0:
        raise ValueError("swap_labels: one identity, nothing to swap to")
    n = len(pids)
    swapped = np.zeros(n, dtype=bool)
    swapped[rng.choice(n, size=int(round(q * n)), replace=False)] = True
    out = pids.copy()
    for i in np.flatnonzero(swapped):
        others = ids[ids != pids[i]]
        out[i] = others[rng.integers(len(others))]
    return [int(p) for p in out], swapped


def measure(draw: Draw, scorers: dict[str, Scorer], ratio: float, batches: int) -> dict:
    """Score `batches` draws with every scorer (the same candidates for all) and count: per mode the kept
    rows and the correct ones among them, the candidates and their correct ones, and every candidate's
    Δl with its correctness (for the AUC, over all candidates and over those whose label the step's real
    rows share, when the draw says which)."""
    out = {m: {"kept": 0, "kept_correct": 0, "delta": [], "correct": []} for m in scorers}
    cand = {"candidates": 0, "correct": 0}
    seen_all = []
    for _ in range(batches):
        x, y, n, correct, *rest = draw()
        correct = torch.as_tensor(correct, dtype=torch.bool)
        seen_all += (rest[0] if rest else torch.zeros(len(correct), dtype=torch.bool)).tolist()
        cand["candidates"] += len(correct)
        cand["correct"] += int(correct.sum())
        for m, score in scorers.items():
            delta = score(x, y, n).detach().float().cpu()
            keep = select(delta, ratio)
            out[m]["kept"] += len(keep)
            out[m]["kept_correct"] += int(correct[keep].sum())
            out[m]["delta"] += delta.tolist()
            out[m]["correct"] += correct.tolist()
    seen = np.asarray(seen_all, dtype=bool)
    res = {"candidates": cand["candidates"], "candidate_precision": cand["correct"] / max(1, cand["candidates"]),
           "seen_share": float(seen.mean()) if len(seen) else float("nan")}

    def auc(d, c):
        return roc_auc(-d[c], -d[~c]) if c.any() and (~c).any() else float("nan")
    for m, o in out.items():
        d, c = np.asarray(o["delta"]), np.asarray(o["correct"], dtype=bool)
        res[m] = {"kept": o["kept"], "precision": o["kept_correct"] / max(1, o["kept"]), "auc": auc(d, c),
                  "auc_seen": auc(d[seen], c[seen])}
    return res


def t_interval(v, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student's t interval of the mean over seeds (NaNs, seeds without the quantity, left out)."""
    v = np.asarray(v, np.float64)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if len(v) < 2 or np.ptp(v) == 0:
        return m, m, m
    h = float(st.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, m - h, m + h


# ----------------------------------------------------------------------------------- the trainer's
def trainer_draw(images, labels, syn: Synthetic, correct: np.ndarray, table: dict, p, seed: int) -> Draw:
    """Steps as `fit` draws them at progress 0 of the mix: the real P×K batch (augmented), and the
    candidates from `make_mix`'s sampler over the pool's (partly wrong) labels, `n_synthetic_ids` of
    them × K, augmented the same way; with each candidate's correctness."""
    d, c = p.downstream, p.downstream.train
    sel = d.selection
    mix = make_mix(syn, d.mix, table, c, seed, sel)
    real = PKSampler(labels, c.p, c.k, seed).batches(10 ** 6)
    cand = mix.sampler.batches(10 ** 6)
    g = torch.Generator().manual_seed(seed)
    labels_t = torch.from_numpy(labels)
    n_ids = n_synthetic_ids(0.0, d.mix, c.p, mix.sampler.p, keep_ratio(sel))
    ok = torch.from_numpy(correct)

    def draw():
        idx = next(real)
        sidx = next(cand)[: n_ids * c.k]
        rx = augment(normalize(images[idx]), g, c.flip, c.pad, c.random_erasing)
        sx = augment(normalize(mix.images[sidx]), g, c.flip, c.pad, c.random_erasing)
        ry, sy = labels_t[idx], mix.labels[sidx]
        return torch.cat([rx, sx]), torch.cat([ry, sy]), len(idx), ok[sidx], torch.isin(sy, ry)
    return draw


def trainer_scorers(model, p, seed: int) -> dict[str, Scorer]:
    """exact, fast (params' scope) and random, with the trainer's loss on a mixed batch (n_syn = the
    candidates), its l_id, lookahead and η = train.lr (as bench/selection.py)."""
    d, c = p.downstream, p.downstream.train
    loss_fn, id_loss = trainer_losses(c, d.mix.smoothing)
    sel, lr = d.selection, c.lr
    pick = torch.Generator().manual_seed(seed + 104729)

    def mixed(n, b):
        return lambda f, lg, yy: loss_fn(f, lg, yy, n_syn=b - n)

    def exact(x, y, n):
        return delta_exact(model, x, y, n, lr, mixed(n, len(y)), id_loss, sel.lookahead)

    def fast(x, y, n):
        split = encoder_split(model, sel.scope)
        return delta_fast(split, _scoring_input(split, x), y, n, lr, mixed(n, len(y)), id_loss=id_loss,
                          rows=sel.lookahead)

    def rand(x, y, n):
        return torch.rand(len(y) - n, generator=pick)
    return {"exact": exact, "fast": fast, "random": rand}


def with_lookahead(p, rows: str):
    """params with downstream.selection.lookahead = rows."""
    d = p.downstream
    return replace(p, downstream=replace(d, selection=replace(d.selection, lookahead=rows)))


def run_seed(p, ds, images, pool, q: float, seed: int, epochs: list[int], batches: int, pretrained: str,
             lookaheads: list[str]) -> dict:
    """One seed: its label swap of the pool, then per model state (`epochs` of real-only training; each
    state is its own short run of the trainer's schedule, warm-up and cosine over those epochs) and per
    lookahead the same draws scored -> {"states": {"<lookahead>/<epochs>": measure's result}}."""
    d, c = p.downstream, p.downstream.train
    x_pool, pids = pool
    noisy, swapped = swap_labels(pids, q, np.random.default_rng([seed, 41]))
    syn = Synthetic(x_pool, noisy)
    table = class_table([r.pid for r in ds.train], syn)
    labels = np.array([table[r.pid] for r in ds.train], dtype=np.int64)
    out = {"seed": seed, "pool_precision": float(1 - swapped.mean()), "states": {}}
    for e in epochs:
        torch.manual_seed(seed)
        cfg = replace(c, epochs=e, warmup_epochs=min(c.warmup_epochs, e), pretrained_path=pretrained)
        model = IdentityEncoder(EncoderConfig(cfg.backbone, len(table), cfg.embed_dim, cfg.height, cfg.width,
                                              head=loss_head(cfg.loss)), cfg.pretrained_path)
        loss_fn, id_loss = trainer_losses(cfg)
        t0 = time.time()
        if e > 0:
            fit(model, make_optimizer(model, cfg), images, labels, cfg, seed, loss_fn, id_loss=id_loss, progress=False)
        model.train()
        t_train = time.time() - t0
        for la in lookaheads:  # the same draws (seeded streams) for every lookahead
            t1 = time.time()
            pl = with_lookahead(p, la)
            r = measure(trainer_draw(images, labels, syn, ~swapped, table, pl, seed), trainer_scorers(model, pl, seed),
                        d.selection.ratio, batches)
            r.update(train_seconds=t_train, score_seconds=time.time() - t1)
            out["states"][f"{la}/{e}"] = r
            print(f"seed {seed} lookahead {la} epochs {e}: candidates {r['candidate_precision']:.3f} "
                  + " ".join(f"{m} {r[m]['precision']:.3f} (auc {r[m]['auc']:.3f})" for m in MODES)
                  + f"  [{t_train:.0f}+{r['score_seconds']:.0f} s]", flush=True)
    return out


def summarise(per_seed: list[dict], state: str) -> dict:
    """Over seeds: each mode's kept precision and AUC (mean, 95 % t-interval), the candidates' and the
    pool's precision, and the paired differences kept − candidates and mode − random."""
    rs = [s["states"][state] for s in per_seed]
    cand = [r["candidate_precision"] for r in rs]
    out = {"pool": t_interval([s["pool_precision"] for s in per_seed]), "candidates": t_interval(cand),
           "seen_share": t_interval([r.get("seen_share", float("nan")) for r in rs]), "modes": {}}
    for m in MODES:
        prec = [r[m]["precision"] for r in rs]
        out["modes"][m] = {"precision": t_interval(prec), "auc": t_interval([r[m]["auc"] for r in rs]),
                           "auc_seen": t_interval([r[m]["auc_seen"] for r in rs]),
                           "vs_candidates": paired_t(cand, prec),
                           "vs_random": paired_t([r["random"]["precision"] for r in rs], prec) if m != "random" else None}
    return out


def fmt(t) -> str:
    return f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"


def fmt_d(d) -> str:
    return f"{d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}], p = {d['p_value']:.3g}"


def table(summary: dict, state: str) -> str:
    s = summary
    rows, e = state.split("/") if "/" in state else ("", state)
    lines = [f"lookahead {rows}, model state: {e} epochs of real-only training; candidates' label precision "
             f"{fmt(s['candidates'])} (pool {s['pool'][0]:.3f}); candidates whose label the step's real rows "
             f"share: {s['seen_share'][0]:.3f}", "",
             "| mode | kept label precision [95 % CI] | kept − candidates [95 % CI], p | − random [95 % CI], p | "
             "AUC of −Δl for a correct label | the same, label among the real rows' |",
             "| --- | --- | --- | --- | --- | --- |"]
    for m in MODES:
        r = s["modes"][m]
        lines.append(f"| {m} | {fmt(r['precision'])} | {fmt_d(r['vs_candidates'])} | "
                     f"{fmt_d(r['vs_random']) if r['vs_random'] else ''} | {fmt(r['auc']) if m != 'random' else ''} | {fmt(r['auc_seen']) if m != 'random' else ''} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--q", type=float, default=0.3, help="share of the pool's labels swapped")
    ap.add_argument("--per-id", type=int, default=4, help="truth images per train identity in the pool")
    ap.add_argument("--batches", type=int, default=20, help="steps scored per seed and model state")
    ap.add_argument("--epochs", default="10", help="model states: epochs of real-only training, comma-separated")
    ap.add_argument("--pretrained", default=None, help="backbone start (default: downstream.train.pretrained_path)")
    ap.add_argument("--lookahead", default="", help="lookaheads to score with, comma-separated (real, mixed; "
                    "default downstream.selection.lookahead)")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    p = load_params(a.params)
    d, c = p.downstream, p.downstream.train
    if d.selection.mode == "off":  # the composition of a selecting trainer: 1/ratio times the kept candidates
        p = replace(p, downstream=replace(d, selection=replace(d.selection, mode="fast")))
        d = p.downstream
    lookaheads = a.lookahead.split(",") if a.lookahead else [d.selection.lookahead]
    from rgsyn.data.layouts import read_index
    from rgsyn.data.procedural.truth import truth_images
    ds = read_index(p.data.index)
    pids = sorted({r.pid for r in ds.train})
    pool = truth_images(p.data, pids, a.per_id, salt=0)
    images = load_images([r.path for r in ds.train], c.height, c.width)
    seeds = [int(s) for s in a.seeds.split(",")]
    epochs = [int(e) for e in a.epochs.split(",")]
    pretrained = c.pretrained_path if a.pretrained is None else a.pretrained
    torch.set_num_threads(1)
    per_seed = [run_seed(p, ds, images, pool, a.q, s, epochs, a.batches, pretrained, lookaheads) for s in seeds]
    keys = [f"{la}/{e}" for la in lookaheads for e in epochs]
    n_cand = per_seed[0]["states"][keys[0]]["candidates"] // a.batches
    print(f"\n{p.data.layout} set {p.data.index}: {len(ds.train)} real train images of {len(pids)} identities; pool "
          f"{len(pool[1])} truth images (salt 0, {a.per_id} per identity), q = {a.q}; {c.backbone} {c.height}x{c.width}, "
          f"start {pretrained or 'random init'}; per step {c.p * c.k} real + {n_cand} candidates, keep ratio "
          f"{d.selection.ratio}, fast scope {d.selection.scope}, lookaheads {lookaheads}, η {c.lr}; "
          f"{a.batches} steps per seed, seeds {seeds}")
    summaries = {}
    for k in keys:
        summaries[k] = summarise(per_seed, k)
        print("\n" + table(summaries[k], k))
        print("per seed kept − candidates (mean ± s.e., min): " + "; ".join(
            f"{m} {agree([r['states'][k][m]['precision'] - r['states'][k]['candidate_precision'] for r in per_seed])}"
            for m in MODES))
    if a.out:
        Path(a.out).write_text(json.dumps({
            "command": "python bench/selection_truth.py " + " ".join(sys.argv[1:]),
            "params": a.params, "q": a.q, "per_id": a.per_id, "batches": a.batches, "seeds": seeds, "epochs": epochs,
            "pretrained": pretrained, "keep_ratio": d.selection.ratio, "scope": d.selection.scope,
            "lookaheads": lookaheads, "lr": c.lr, "real_per_step": c.p * c.k, "candidates_per_step": n_cand,
            "torch": torch.__version__, "machine": platform.machine(),
            "summary": summaries, "per_seed": per_seed}, indent=1))


if __name__ == "__main__":
    main()
