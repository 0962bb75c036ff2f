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


def _centred(f: np.ndarray) -> np.ndarray:
    """Rows minus their mean, over √(n − 1): A with AᵀA the sample covariance (np.cov's ddof 1)."""
    return (f - f.mean(0)) / np.sqrt(max(1, len(f) - 1))


def frechet_low_rank(mu1, a1, f2) -> float:
    """The Fréchet distance of a set with mean mu1 and centred rows a1 (_centred) to features f2 (M, D),
    without a D×D square root: tr (Σ1 Σ2)^½ is the nuclear norm of a1 a2ᵀ (the non-zero eigenvalues of
    Σ1 Σ2 are the squared singular values of that n1 × M matrix). Exact at any size, and what keeps the
    distance cheap where the features are wider than the samples are many (ResNet-50's 2048 dimensions
    against a few samples per identity: a 2048² sqrtm per bootstrap resample takes seconds)."""
    a2 = _centred(f2)
    nuclear = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()
    return float(((mu1 - f2.mean(0)) ** 2).sum() + (a1 ** 2).sum() + (a2 ** 2).sum() - 2 * nuclear)


def paired_frechet(real, before, after, classes, n_boot: int = 100, seed: int = 0) -> dict:
    """Fréchet distance of `real` features (N, D) to the generated features `before` and `after` (M, D)
    (the same identities `classes` (M,) and noise), with bootstrap s.e. over identities of each and of
    the change after − before (identities resampled jointly)."""
    real, before, after, classes = (np.asarray(real), np.asarray(before), np.asarray(after), np.asarray(classes))
    if min(len(real), len(before)) - 1 < real.shape[1]:  # rank-deficient covariances: the low-rank form
        mr, ar = real.astype(np.float64).mean(0), _centred(real.astype(np.float64))
        fd = lambda f: frechet_low_rank(mr, ar, f.astype(np.float64))  # noqa: E731
    else:
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


# -- identity-conditional fidelity against the truth ---------------------------------------------------
# Per identity, generated features against reference features of the same identity (the renderer's own
# images on the embedded sets, held-out real images elsewhere), averaged over identities: a generator
# that draws the right people in the wrong proportions, or one person for everyone, shows here where a
# pooled distance averages it away.

def _unit(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of every row of x (N, D) to its k-th nearest other row (N,)."""
    d = np.sqrt(np.maximum(((x[:, None] - x[None]) ** 2).sum(-1), 0))
    return np.sort(d, axis=1)[:, k]  # column 0 is the row itself


def in_manifold(ref: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """Which rows of query (M, D) lie in the k-NN manifold of ref (N, D) — the union of balls around each
    reference row reaching its k-th neighbour (Kynkäänniemi et al. 2019) -> (M,) bool."""
    r = knn_radii(ref, k)
    d = np.sqrt(np.maximum(((query[:, None] - ref[None]) ** 2).sum(-1), 0))  # (M, N)
    return (d <= r[None]).any(1)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float, int]:
    """Improved precision (share of fakes inside the real manifold) and recall (share of reals inside the
    fake manifold) at one k for both manifolds, as Kynkäänniemi et al. read them, capped at the smaller
    set's size − 1 (a few samples per identity): the two figures stay comparable, and a generator
    judged on more samples per identity is judged at a larger k. -> (precision, recall, k used)."""
    k = min(k, len(real) - 1, len(fake) - 1)
    if k < 1:
        raise ValueError(f"precision_recall needs at least 2 real and 2 fake rows, got {len(real)} and {len(fake)}")
    return float(in_manifold(real, fake, k).mean()), float(in_manifold(fake, real, k).mean()), k


def kernel_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """Unbiased squared MMD with the cubic polynomial kernel (x·y / D + 1)³: the kernel inception distance of
    Bińkowski et al. 2018 in the given feature space, unbiased at any sample size (the Fréchet distance is
    not, and needs more samples than dimensions); 0 in expectation when both come from one distribution."""
    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"kernel_distance needs at least 2 rows of each, got {len(real)} and {len(fake)}")
    d = real.shape[1]
    kern = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    krr, kff, krf = kern(real, real), kern(fake, fake), kern(real, fake)
    n, m = len(real), len(fake)
    return float((krr.sum() - np.trace(krr)) / (n * (n - 1)) + (kff.sum() - np.trace(kff)) / (m * (m - 1))
                 - 2 * krf.mean())


def classification_accuracy(real: np.ndarray, real_cls: np.ndarray, fake: np.ndarray, fake_cls: np.ndarray) -> float:
    """Classification accuracy score (Ravuri & Vinyals 2019) in a frozen feature space: a nearest-class-mean
    classifier fitted on the generated features alone (one L2-normalised mean per identity) reads the
    reference images; the share it names right. 1 / #identities is chance."""
    ids = np.unique(fake_cls)
    protos = np.stack([fake[fake_cls == c].mean(0) for c in ids])
    protos /= np.linalg.norm(protos, axis=1, keepdims=True) + 1e-12
    pred = ids[np.argmax(real @ protos.T, axis=1)]
    keep = np.isin(real_cls, ids)
    return float((pred[keep] == real_cls[keep]).mean())


def identity_fidelity(real, real_cls, fake, fake_cls, k: int = 3) -> dict:
    """Per-identity precision, recall and kernel distance, averaged over the identities both sides have
    (at least 2 rows each; None where none has), and the classification accuracy score over all of them. Features (N, D) and
    (M, D) are L2-normalised here, as the matchers compare them."""
    real, fake, real_cls, fake_cls = _unit(real), _unit(fake), np.asarray(real_cls), np.asarray(fake_cls)
    per = {"precision": [], "recall": [], "kernel_distance": []}
    ks = set()
    for c in np.intersect1d(real_cls, fake_cls):
        r, f = real[real_cls == c], fake[fake_cls == c]
        if len(r) < 2 or len(f) < 2:
            continue
        p, q, used = precision_recall(r, f, k)
        ks.add(used)
        per["precision"].append(p)
        per["recall"].append(q)
        per["kernel_distance"].append(kernel_distance(r, f))
    # with fewer than 2 rows a side no identity has a manifold or an unbiased distance: those stay None
    out = {key: float(np.mean(v)) if v else None for key, v in per.items()}
    out.update({f"{key}_se": float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None for key, v in per.items()})
    return {**out, "cas": classification_accuracy(real, real_cls, fake, fake_cls), "cas_chance": 1 / len(np.unique(fake_cls)),
            "identities": len(per["precision"]), "k": max(ks, default=None)}


REFERENCE_PER_ID = 8  # renderer images per identity the figures are read against (embedded sets)
PRIOR_TRUTH_FIRST = 1_000_000  # first capture index of the prior's truth: its training set holds 0 .. per_class - 1


def reference_images(params, pids: list[int], height: int, width: int) -> tuple["torch.Tensor", np.ndarray, str]:
    """What a generator of identities `pids` (class i = pids[i]) is measured against -> (uint8 images
    (N, 3, height, width), class indices (N,), source): on the embedded sets the renderer's own new images
    of those identities (rgsyn.data.procedural.truth, a draw no model trained on), on a user's layout the
    identities' held-out real images (`data.holdout_per_id`; the figures then cover identities with 2)."""
    import torch

    from rgsyn.data.images import load_images, resize_images

    cls = {p: i for i, p in enumerate(pids)}
    if params.data.layout in ("embedded", "embedded-face"):
        from rgsyn.data.procedural.truth import truth_images

        imgs, labels = truth_images(params.data, pids, REFERENCE_PER_ID, salt=1)
        return resize_images(imgs, height, width), np.array([cls[p] for p in labels]), "renderer"
    from rgsyn.data.layouts import member_split

    held = [r for r in member_split(params.data)[1] if r.pid in cls]
    imgs = load_images([r.path for r in held], height, width) if held else torch.zeros(0, 3, height, width, dtype=torch.uint8)
    return imgs, np.array([cls[r.pid] for r in held], dtype=np.int64), "held-out real"


def prior_reference(params, num_classes: int, height: int, width: int) -> tuple["torch.Tensor", np.ndarray, str]:
    """What the embedded prior is measured against on its own classes 0 .. num_classes - 1: new renders of
    those general-domain identities (captures from PRIOR_TRUTH_FIRST on, none in its training set), as
    reference_images returns them."""
    from rgsyn.data.images import resize_images
    from rgsyn.generator.prior import general_domain

    imgs, labels = general_domain(params, num_classes, REFERENCE_PER_ID, params.prior.seed, progress=False,
                                  first=PRIOR_TRUTH_FIRST)
    return resize_images(imgs, height, width), labels.numpy(), "renderer"


def generator_fidelity(judge, params, pids: list[int], samples: dict, reference=None) -> dict:
    """identity_fidelity of each named set of samples {name: (uint8 images (M, 3, H, W), classes (M,))}
    against reference_images (or `reference`, a function (height, width) -> the same triple), in the
    judge's feature space (the audit's encoder, trained on no target image) -> {"source", "encoder",
    name: figures}."""
    cfg = judge.encoder.cfg
    ref, ref_cls, source = (reference(cfg.height, cfg.width) if reference else
                            reference_images(params, pids, cfg.height, cfg.width))
    ref_f = judge.features(ref).cpu().numpy()
    out = {"source": source, "encoder": judge.name, "reference_per_id": REFERENCE_PER_ID if source == "renderer" else None}
    for name, (images, classes) in samples.items():
        f = judge.features(images).cpu().numpy()
        out[name] = identity_fidelity(ref_f, ref_cls, f, np.asarray(classes))
    return out
