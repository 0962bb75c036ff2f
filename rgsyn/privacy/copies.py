"""Near-copy detection, calibrated on the real data.

A copy is a pixel-level event: identity features are built to ignore nuisance, so in their space a
new image of the same person and a copy of a training image look alike. Each sample is therefore
compared with the generator's training images in two spaces:

- pixels at the generator's resolution (the sample's own decode path): each image resized with the
  loader's filter, centred and L2-normalised per image, so the cosine is the Pearson correlation of
  the pixels; training images are compared as stored and mirrored (the generator trains with flips);
- the auditor's identity features (cosine).

Calibration: for every training image of an identity with ≥ 2 of them, its similarity to the nearest
*other* image of its own identity (two different shots of one person). A sample is a near-copy in a
space when its most similar training image is closer than the `copy_quantile` quantile of that
distribution (numpy's linear interpolation).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rgsyn.data.images import resize_images


def pixel_vectors(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> (N, 3·height·width) centred, L2-normalised pixel vectors at that size."""
    x = resize_images(images, height, width).flatten(1).float()
    return F.normalize(x - x.mean(1, keepdim=True), dim=1)


def mirrored(images: torch.Tensor) -> torch.Tensor:
    """The images and their horizontal mirrors: (N, ...) -> (2N, ...)."""
    return torch.cat([images, images.flip(-1)])


def max_similarity(query: torch.Tensor, ref: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine of each query row (M, D) to its most similar ref row (N, D) -> (sim (M,), index (M,)), in
    blocks so a whole run fits in memory."""
    q, r = F.normalize(query.float(), dim=1), F.normalize(ref.float(), dim=1)
    best, arg = torch.full((len(q),), -2.0), torch.zeros(len(q), dtype=torch.long)
    for b in range(0, len(q), chunk):
        for a in range(0, len(r), chunk):
            s, i = (q[b:b + chunk] @ r[a:a + chunk].t()).max(1)
            better = s > best[b:b + chunk]
            best[b:b + chunk] = torch.where(better, s, best[b:b + chunk])
            arg[b:b + chunk] = torch.where(better, i + a, arg[b:b + chunk])
    return best, arg


def nearest_other_shot(vecs: torch.Tensor, pids: torch.Tensor, alt: torch.Tensor | None = None) -> np.ndarray:
    """For each row (N, D), the max cosine to another row of the same pid (NaN when it has none).
    `alt` (N, D): a second view of every row (the mirror) that counts as that row too."""
    v = F.normalize(vecs.float(), dim=1)
    sim = v @ v.t()
    if alt is not None:
        sim = torch.maximum(sim, v @ F.normalize(alt.float(), dim=1).t())
    same = pids[:, None] == pids[None, :]
    same.fill_diagonal_(False)
    sim = torch.where(same, sim, torch.full_like(sim, -np.inf))
    out = sim.max(1).values.double().numpy()
    out[~same.any(1).numpy()] = np.nan
    return out


def threshold(nearest: np.ndarray, quantile: float) -> float:
    """The `quantile` of the finite nearest-other-shot similarities."""
    if not 0 < quantile < 1:
        raise ValueError(f"params.yaml: audit.copy_quantile = {quantile} must lie in (0, 1) (default 0.99)")
    v = nearest[np.isfinite(nearest)]
    if len(v) == 0:
        raise ValueError("copy calibration needs an identity with at least 2 training images")
    return float(np.quantile(v, quantile))
