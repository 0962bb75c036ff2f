"""The statistics every claim in the reports goes through: bootstrap and t intervals of (paired) means,
paired tests, ROC-AUC with its interval and TPR at a fixed FPR. scipy's `stats.bootstrap` (percentile
intervals) and scikit-learn's ROC do the computing; this module fixes the conventions and the seeds.

Bootstrap resamples whole units (seeds of a ladder, identities of an evaluation), never the samples
inside a unit, because samples of one identity or one training run are not independent.
"""
from __future__ import annotations

import numpy as np
from scipy import stats as st
from sklearn.metrics import roc_auc_score, roc_curve

N_BOOT = 10_000


def _bootstrap(samples: tuple, statistic, n_boot: int, seed: int, level: float = 0.95):
    """scipy's percentile bootstrap; with several samples each is resampled on its own (unpaired)."""
    return st.bootstrap(samples, statistic, n_resamples=n_boot, method="percentile", confidence_level=level,
                        vectorized=True, batch=500, rng=np.random.default_rng(seed))


def bootstrap_means(x, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Means of `n_boot` resamples (with replacement) of the units x (n,) -> (n_boot,)."""
    return _bootstrap((np.asarray(x, np.float64),), np.mean, n_boot, seed).bootstrap_distribution


def bootstrap_se(x, n_boot: int = N_BOOT, seed: int = 0) -> float:
    """Bootstrap standard error of the mean of the units x."""
    if len(x) < 2:
        return float("nan")
    return float(_bootstrap((np.asarray(x, np.float64),), np.mean, n_boot, seed).standard_error)


def paired_difference(a, b, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> dict:
    """b − a over paired units (same seed / identity in both): mean, bootstrap percentile interval,
    bootstrap s.e., paired t-test p-value (two-sided) and the Wilcoxon signed-rank p-value."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_difference needs two 1-D arrays of equal length, got {a.shape} and {b.shape}")
    d = b - a
    lo = hi = se = float("nan")
    if len(d) > 1:
        boot = _bootstrap((d,), np.mean, n_boot, seed, level)
        lo, hi, se = boot.confidence_interval.low, boot.confidence_interval.high, boot.standard_error
    if len(d) > 1 and np.ptp(d) > 0:
        p = float(st.ttest_rel(b, a).pvalue)
        w = float(st.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    else:
        p = w = (1.0 if len(d) > 1 and np.all(d == 0) else float("nan"))
    return {"mean": float(d.mean()), "ci_low": float(lo), "ci_high": float(hi), "se": float(se), "p_value": p,
            "wilcoxon_p": w, "n": int(len(d))}


def paired_t(a, b, level: float = 0.95) -> dict:
    """b − a over paired units: mean, the paired t-test's interval (scipy's `ttest_rel` confidence
    interval), its p-value (two-sided), s.e. and n; a constant difference has the point as interval."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_t needs two 1-D arrays of equal length, got {a.shape} and {b.shape}")
    d = b - a
    mean, n = float(d.mean()), int(len(d))
    if n > 1 and np.ptp(d) > 0:
        t = st.ttest_rel(b, a)
        ci = t.confidence_interval(level)
        return {"mean": mean, "ci_low": float(ci.low), "ci_high": float(ci.high), "p_value": float(t.pvalue),
                "se": float(d.std(ddof=1) / np.sqrt(n)), "n": n}
    p = 1.0 if n > 1 and np.all(d == 0) else float("nan")
    lo = hi = mean if n > 1 else float("nan")
    return {"mean": mean, "ci_low": lo, "ci_high": hi, "p_value": p, "se": 0.0 if n > 1 else float("nan"), "n": n}


def _labelled(pos, neg) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    return np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]), np.concatenate([pos, neg])


def roc_auc(pos, neg) -> float:
    """P(score of a positive > score of a negative) + ½ P(tie) (ROC-AUC; ties count one half)."""
    return float(roc_auc_score(*_labelled(pos, neg)))


def roc(pos, neg) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve (fpr, tpr), from (0, 0) to (1, 1); a tie of scores is one diagonal segment."""
    fpr, tpr, _ = roc_curve(*_labelled(pos, neg), drop_intermediate=False)
    return fpr, tpr


def tpr_at_fpr(pos, neg, fpr: float) -> float:
    """Share of positives scored above the threshold that lets at most `fpr` of the negatives pass."""
    # every threshold counts (drop_intermediate off): a dropped collinear point can be the best one
    f, t = roc(pos, neg)
    return float(t[f <= fpr].max())


def _auc_u(pos, neg, axis=-1):
    """roc_auc as Mann-Whitney U / (n_pos n_neg), the same number, vectorised over resamples: one call
    scores all of them where roc_auc_score would be called once per resample (20x slower)."""
    u = st.mannwhitneyu(pos, neg, axis=axis, method="asymptotic", use_continuity=False).statistic
    return u / (pos.shape[axis] * neg.shape[axis])


def auc_interval(pos, neg, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Bootstrap percentile interval of ROC-AUC, positives and negatives resampled separately."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    boot = _bootstrap((pos, neg), _auc_u, n_boot, seed, level)
    return float(boot.confidence_interval.low), float(boot.confidence_interval.high)


def paired_ratio(base, num, den, level: float = 0.95) -> dict:
    """(mean(num − base)) / (mean(den − base)) over paired units (the same seed in all three), with
    Fieller's interval (Fieller 1954), which, unlike the delta method, stays right when the denominator's
    interval comes near 0: the set of ρ where mean(d_num) − ρ·mean(d_den) is not rejected by a t-test.
    The interval is (−inf, inf) with `bounded` False when the denominator itself is not resolved."""
    base, num, den = (np.asarray(v, np.float64) for v in (base, num, den))
    if not (base.shape == num.shape == den.shape) or base.ndim != 1 or len(base) < 2:
        raise ValueError(f"paired_ratio needs three 1-D arrays of one length >= 2, got {base.shape}, {num.shape}, {den.shape}")
    a, b = num - base, den - base
    n = len(a)
    ma, mb = a.mean(), b.mean()
    c = np.cov(a, b, ddof=1) / n  # covariance of the two means
    t2 = st.t.ppf(0.5 + level / 2, n - 1) ** 2
    qa, qb, qc = mb ** 2 - t2 * c[1, 1], ma * mb - t2 * c[0, 1], ma ** 2 - t2 * c[0, 0]
    out = {"ratio": float(ma / mb) if mb else float("nan"), "num": float(ma), "den": float(mb), "n": n}
    disc = qb ** 2 - qa * qc
    if qa <= 0 or disc < 0:
        return {**out, "ci_low": float("-inf"), "ci_high": float("inf"), "bounded": False}
    r = np.sqrt(disc)
    return {**out, "ci_low": float((qb - r) / qa), "ci_high": float((qb + r) / qa), "bounded": True}
