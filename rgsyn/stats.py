"""The statistics every claim in the reports goes through: bootstrap intervals of (paired) means,
paired tests, ROC-AUC with its interval and TPR at a fixed FPR. numpy + scipy only, seeded.

Bootstrap resamples whole units (seeds of a ladder, identities of an evaluation), never the samples
inside a unit, because samples of one identity or one training run are not independent.
"""
from __future__ import annotations

import numpy as np
from scipy import stats as st

N_BOOT = 10_000


def bootstrap_means(x, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Means of `n_boot` resamples (with replacement) of the units x (n,) -> (n_boot,)."""
    x = np.asarray(x, np.float64)
    idx = np.random.default_rng(seed).integers(0, len(x), (n_boot, len(x)))
    return x[idx].mean(1)


def bootstrap_se(x, n_boot: int = N_BOOT, seed: int = 0) -> float:
    """Bootstrap standard error of the mean of the units x."""
    return float(bootstrap_means(x, n_boot, seed).std(ddof=1)) if len(x) > 1 else float("nan")


def paired_difference(a, b, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> dict:
    """b − a over paired units (same seed / identity in both): mean, bootstrap percentile interval,
    bootstrap s.e., paired t-test p-value (two-sided) and the Wilcoxon signed-rank p-value."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_difference needs two 1-D arrays of equal length, got {a.shape} and {b.shape}")
    d = b - a
    boots = bootstrap_means(d, n_boot, seed)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2]) if len(d) > 1 else (np.nan, np.nan)
    if len(d) > 1 and np.ptp(d) > 0:
        p = float(st.ttest_rel(b, a).pvalue)
        w = float(st.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    else:
        p = w = (1.0 if len(d) > 1 and np.all(d == 0) else float("nan"))
    return {"mean": float(d.mean()), "ci_low": float(lo), "ci_high": float(hi),
            "se": float(boots.std(ddof=1)) if len(d) > 1 else float("nan"), "p_value": p, "wilcoxon_p": w,
            "n": int(len(d))}


def roc_auc(pos, neg) -> float:
    """P(score of a positive > score of a negative) + ½ P(tie): the Mann-Whitney form of ROC-AUC."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    ranks = st.rankdata(np.concatenate([pos, neg]))
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def tpr_at_fpr(pos, neg, fpr: float) -> float:
    """Share of positives scored above the threshold that lets at most `fpr` of the negatives pass."""
    pos, neg = np.asarray(pos, np.float64), np.sort(np.asarray(neg, np.float64))
    allowed = int(np.floor(fpr * len(neg)))  # negatives allowed above the threshold
    thr = neg[len(neg) - allowed - 1] if allowed < len(neg) else -np.inf
    return float((pos > thr).mean())


def auc_interval(pos, neg, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Bootstrap percentile interval of ROC-AUC, positives and negatives resampled separately."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    rng = np.random.default_rng(seed)
    aucs = [roc_auc(pos[rng.integers(0, len(pos), len(pos))], neg[rng.integers(0, len(neg), len(neg))])
            for _ in range(n_boot)]
    lo, hi = np.quantile(aucs, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
