"""Fidelity of generated images as a Fréchet distance between feature distributions (Heusel et al.
2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium",
arXiv:1706.08500), read in an identity encoder's feature space instead of Inception's: the features
that matter here are the ones a matcher uses, and the audit's encoder is one no reward was trained on.

Its uncertainty comes from resampling whole identities of the generated set (an identity's samples
are not independent); two generators evaluated on the same identities and noise are resampled
together, so the change gets a paired standard error.
"""
from __future__ import annotations

import numpy as np
from scipy import linalg


def gaussian_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D)) of features (N, D)."""
    f = np.asarray(feats, np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½), the Fréchet distance of two Gaussians."""
    covmean, _ = linalg.sqrtm(cov1 @ cov2, disp=False)
    if not np.isfinite(covmean).all():  # near-singular product: regularise as pytorch-fid does
        eps = 1e-6 * np.eye(len(mu1))
        covmean = linalg.sqrtm((cov1 + eps) @ (cov2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def paired_frechet(real, before, after, classes, n_boot: int = 100, seed: int = 0) -> dict:
    """Fréchet distance of `real` features (N, D) to the generated features `before` and `after` (M, D)
    (the same identities `classes` (M,) and noise), with bootstrap s.e. over identities of each and of
    the change after − before (identities resampled jointly)."""
    real, before, after, classes = (np.asarray(real), np.asarray(before), np.asarray(after), np.asarray(classes))
    mr, cr = gaussian_stats(real)
    fd = lambda f: frechet_distance(mr, cr, *gaussian_stats(f))  # noqa: E731
    ids = np.unique(classes)
    rows = {c: np.flatnonzero(classes == c) for c in ids}
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        pick = np.concatenate([rows[c] for c in rng.choice(ids, len(ids), replace=True)])
        boots.append((fd(before[pick]), fd(after[pick])))
    b = np.asarray(boots)
    out_b, out_a = fd(before), fd(after)
    return {"before": out_b, "after": out_a, "change": out_a - out_b, "se_before": float(b[:, 0].std(ddof=1)),
            "se_after": float(b[:, 1].std(ddof=1)), "se": float((b[:, 1] - b[:, 0]).std(ddof=1))}
