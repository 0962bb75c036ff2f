"""Privacy audit of synthetic samples in the reference encoder's feature space.

Why: a generator fine-tuned on few real images per identity can reproduce a training image. A
synthetic sample counts as a leak when its nearest real training image is more similar than two
*different* real people usually are: the threshold is the (1 - fmr) quantile of the real impostor
distribution (cosine similarity over all pairs of real train images with different pids), i.e. the
similarity a face/re-id matcher would call "same person" at false-match rate `fmr`.

The quantile is exact (numpy's default linear interpolation) without holding all N^2/2 pairs: rows
are processed in chunks and only the top `n_pairs - floor((n_pairs - 1) * (1 - fmr))` similarities
are kept, which contain the two order statistics the interpolation needs.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HIST_BINS = 100  # over [-1, 1]


def impostor_stats(feats: torch.Tensor, pids: torch.Tensor, fmr: float, chunk: int = 1024) -> dict:
    """feats (N, D) real features, pids (N,) -> threshold at `fmr` + the impostor histogram."""
    if not 0 < fmr < 1:
        raise ValueError(f"synth.fmr = {fmr}: a false-match rate must lie in (0, 1) (default 0.001)")
    f = F.normalize(feats.float(), dim=1)
    pids = pids.long()
    _, counts = pids.unique(return_counts=True)
    n_pairs = (len(pids) ** 2 - int((counts ** 2).sum())) // 2
    if n_pairs < 2:
        raise ValueError("the memory bank needs real images of at least two identities for the leakage threshold")
    pos = (n_pairs - 1) * (1 - fmr)
    lo = math.floor(pos)
    k = n_pairs - lo  # values at ascending ranks lo .. n_pairs - 1
    top = torch.empty(0, dtype=torch.float64)
    hist = np.zeros(HIST_BINS, np.int64)
    total, s1, s2 = 0, 0.0, 0.0
    idx = torch.arange(len(f))
    for a in range(0, len(f), chunk):
        rows = idx[a:a + chunk]
        sim = (f[rows] @ f.t()).double()  # (c, N)
        keep = (idx[None, :] > rows[:, None]) & (pids[None, :] != pids[rows][:, None])  # i < j, different ids
        vals = sim[keep]
        total += len(vals)
        s1, s2 = s1 + float(vals.sum()), s2 + float((vals ** 2).sum())
        hist += np.histogram(vals.clamp(-1, 1).numpy(), HIST_BINS, range=(-1.0, 1.0))[0]
        top = torch.cat([top, vals]).topk(min(k, len(top) + len(vals))).values
    assert total == n_pairs
    asc = top.flip(0)  # ascending: asc[0] is rank lo
    hi = asc[1] if k > 1 else asc[0]
    threshold = float(asc[0] + (pos - lo) * (hi - asc[0]))
    mean = s1 / n_pairs
    return {"threshold": threshold, "fmr": fmr, "pairs": n_pairs, "mean": mean,
            "std": math.sqrt(max(s2 / n_pairs - mean ** 2, 0.0)), "hist": hist.tolist()}


def nearest_real(gen: torch.Tensor, real: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Max cosine of each generated feature (M, D) to any real feature (N, D) -> (sim (M,), index (M,)).
    Blocks of chunk x chunk similarities, so a whole run's audit fits in memory."""
    g, r = F.normalize(gen.float(), dim=1), F.normalize(real.float(), dim=1)
    best, arg = torch.full((len(g),), -2.0), torch.zeros(len(g), dtype=torch.long)
    for b in range(0, len(g), chunk):
        for a in range(0, len(r), chunk):
            s, i = (g[b:b + chunk] @ r[a:a + chunk].t()).max(1)
            better = s > best[b:b + chunk]
            best[b:b + chunk] = torch.where(better, s, best[b:b + chunk])
            arg[b:b + chunk] = torch.where(better, i + a, arg[b:b + chunk])
    return best, arg


def _summary(x: np.ndarray) -> dict:
    if len(x) == 0:
        return {}
    q = np.quantile(x, [0.05, 0.5, 0.95, 0.99])
    return {"mean": float(x.mean()), "min": float(x.min()), "p05": float(q[0]), "p50": float(q[1]),
            "p95": float(q[2]), "p99": float(q[3]), "max": float(x.max())}


def audit_report(labels: np.ndarray, features: np.ndarray, nn_sim: np.ndarray, r_sem: np.ndarray,
                 accepted: np.ndarray, bank: torch.Tensor, bank_pids: torch.Tensor, impostor: dict,
                 sem_floor: float) -> dict:
    """Per-run audit over every synthetic sample (all shards): (M,) arrays, features (M, D).

    proto_sim: cosine to the own identity's prototype (normalised mean bank feature, = 2 R_sem - 1);
    nn_same_identity: the nearest real image belongs to the conditioned identity (memorisation of one's
    own images, the leak that matters most, vs. drifting towards another person).
    """
    thr = impostor["threshold"]
    leaked = nn_sim.astype(np.float64) > thr  # the gate's comparison (rgsyn.synth.engine.gate)
    _, arg = nearest_real(torch.from_numpy(features), bank)
    same = bank_pids[arg].numpy() == labels
    ids, inv = np.unique(labels, return_inverse=True)
    protos = torch.stack([F.normalize(bank[bank_pids == int(y)].float().mean(0), dim=0) for y in ids])  # (C, D)
    proto_sim = (F.normalize(torch.from_numpy(features).float(), dim=1) * protos[torch.from_numpy(inv)]).sum(1).numpy()
    m = len(labels)
    return {
        "samples": m, "accepted": int(accepted.sum()), "accept_rate": float(accepted.mean()) if m else 0.0,
        "threshold": thr, "fmr": impostor["fmr"], "impostor_pairs": impostor["pairs"],
        "impostor_mean": impostor["mean"], "impostor_std": impostor["std"],
        "leaked": int(leaked.sum()), "leakage_rate": float(leaked.mean()) if m else 0.0,
        "leaked_nn_same_identity": int((leaked & same).sum()),
        "nn_same_identity_rate": float(same.mean()) if m else 0.0,
        "sem_floor": sem_floor, "below_sem_floor": int((r_sem.astype(np.float64) < sem_floor).sum()),
        "nn_real_sim": _summary(nn_sim), "proto_sim": _summary(proto_sim), "r_sem": _summary(r_sem),
    }


def save_histogram(nn_sim: np.ndarray, impostor: dict, path: str | Path) -> Path:
    """Densities of synthetic-to-nearest-real similarity vs the real impostor pairs, threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.linspace(-1, 1, HIST_BINS + 1)
    imp = np.asarray(impostor["hist"], float)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.stairs(imp / max(imp.sum(), 1) / np.diff(edges), edges, label=f"real impostor pairs (n={impostor['pairs']})")
    syn = np.histogram(np.clip(nn_sim, -1, 1), edges)[0].astype(float)
    ax.stairs(syn / max(syn.sum(), 1) / np.diff(edges), edges, label=f"synthetic -> nearest real (n={len(nn_sim)})")
    ax.axvline(impostor["threshold"], color="k", ls="--", label=f"threshold @ FMR {impostor['fmr']:g}")
    lo = min(edges[np.argmax(imp > 0)] if imp.any() else -1.0, float(np.min(nn_sim)) if len(nn_sim) else 1.0)
    ax.set_xlim(max(-1.0, lo - 0.05), 1.0)  # zoom on where the mass is
    ax.set_xlabel("cosine similarity (reference encoder)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(report: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, sort_keys=True))
    return path
