"""Person re-identification ranking metrics (Market-1501 protocol): CMC, mAP and mINP.

Protocol, per query q (the rule of Market-1501 / DukeMTMC / MSMT17 as torchreid and fast-reid apply it):

* sort the gallery by ascending distance to q;
* drop "junk" gallery entries: same pid AND same camera as q (finding yourself in the same view is trivial);
  gallery entries of other pids from q's camera are kept;
* the true matches are the remaining entries with q's pid; if there are none, q is skipped: it counts
  neither in the averages nor in `num_valid_queries`;
* AP(q)   = mean over true matches of precision@(rank of that match)  = sum(precision at hits) / #matches;
* CMC(q)  = [first match at rank <= k] for k = 1..max_rank;
* INP(q)  = #matches / rank of the hardest (last) match   (Ye et al., "Deep Learning for Person Re-identification:
  A Survey and Outlook", TPAMI 2021; the mINP of fast-reid).

Ranks count kept entries only (junk is removed before ranking). Ties in distance are broken by gallery order:
the sort is stable (`np.argsort(kind="stable")`), so the result is deterministic. torchreid/fast-reid use the
default quicksort, whose tie order is unspecified, so on tied distances their numbers may differ from ours.
"""
from __future__ import annotations

import numpy as np

# Elements per (queries x gallery) work array. A chunk holds a handful of such arrays (int64 ranks, bools),
# so 2**22 elements keeps the peak near 100 MB even for Market-1501 (3,368 x 19,732).
_CHUNK_ELEMENTS = 2**22


def _to_numpy(x) -> np.ndarray:
    """Accept numpy arrays, lists and torch tensors (any device) without importing torch."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D (num_query, num_gallery), got shape {distmat.shape}")
    num_q, num_g = distmat.shape
    for name, arr, n, side in (
        ("q_pids", q_pids, num_q, "rows"),
        ("q_camids", q_camids, num_q, "rows"),
        ("g_pids", g_pids, num_g, "columns"),
        ("g_camids", g_camids, num_g, "columns"),
    ):
        if arr.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},) to match the {n} distmat {side}, got {arr.shape}")
    if num_q == 0 or num_g == 0:
        raise ValueError(f"empty query or gallery: distmat shape {distmat.shape}")
    if int(max_rank) < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")


def evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50, *, chunk_size: int | None = None) -> dict:
    """Market-1501 evaluation of a query x gallery distance matrix (smaller distance = more similar).

    Args:
        distmat: [num_q, num_g] distances (numpy array or torch tensor).
        q_pids, q_camids: [num_q] person ids and camera ids of the queries.
        g_pids, g_camids: [num_g] person ids and camera ids of the gallery.
        max_rank: length of the returned CMC curve. If a query ranks fewer than max_rank gallery entries the
            curve is padded with its last value (it is cumulative, so it stays 1 after the first hit).
        chunk_size: queries sorted at once; default keeps each work array near 2**22 elements.

    Returns:
        {"mAP": float, "mINP": float, "cmc": float64 array [max_rank], "num_valid_queries": int};
        all metrics are fractions in [0, 1], averaged over valid queries only (see the module docstring).
        Ties in distance keep gallery order (stable sort).

    Raises:
        ValueError: if the shapes disagree, or no query has a true match left in the gallery.
    """
    distmat, q_pids, g_pids, q_camids, g_camids = map(_to_numpy, (distmat, q_pids, g_pids, q_camids, g_camids))
    _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    max_rank = int(max_rank)
    num_q, num_g = distmat.shape
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // num_g)

    ap_sum = inp_sum = 0.0
    num_valid = 0
    # first_hit_hist[r] = number of valid queries whose first true match is at rank r+1 (r < max_rank);
    # later first hits never enter the truncated curve, so they need no bin.
    first_hit_hist = np.zeros(max_rank, dtype=np.int64)

    for start in range(0, num_q, chunk_size):
        stop = min(start + chunk_size, num_q)
        order = np.argsort(distmat[start:stop], axis=1, kind="stable")
        same_pid = g_pids[order] == q_pids[start:stop, None]
        same_cam = g_camids[order] == q_camids[start:stop, None]
        keep = ~(same_pid & same_cam)  # junk removal
        good = same_pid & ~same_cam  # true matches, in ranked order

        # 1-based rank among kept entries; junk positions get a rank too, but they are never `good`.
        rank = np.cumsum(keep, axis=1)
        hits_so_far = np.cumsum(good, axis=1)
        num_rel = good.sum(axis=1)
        valid = num_rel > 0
        if not valid.any():
            continue
        good, rank, hits_so_far, num_rel = good[valid], rank[valid], hits_so_far[valid], num_rel[valid]

        # AP: precision at each hit = hits so far / rank, averaged over the hits. Junk ahead of the first kept
        # entry has rank 0; clamp it to 1 to avoid 0/0 there (those positions are masked out anyway).
        precision_at_hits = np.where(good, hits_so_far / np.maximum(rank, 1), 0.0)
        ap_sum += float((precision_at_hits.sum(axis=1) / num_rel).sum())

        # INP: the hardest match is the hit with the largest rank.
        last_hit_rank = np.where(good, rank, 0).max(axis=1)
        inp_sum += float((num_rel / last_hit_rank).sum())

        # CMC: only the rank of the first hit matters.
        first_hit_rank = np.where(good, rank, np.iinfo(np.int64).max).min(axis=1)
        in_curve = first_hit_rank <= max_rank
        first_hit_hist += np.bincount(first_hit_rank[in_curve] - 1, minlength=max_rank)
        num_valid += int(valid.sum())

    if num_valid == 0:
        raise ValueError(
            "no query has a valid match: every query pid is absent from the gallery or only appears "
            "under the query's own camera (those entries are removed by the Market-1501 rule)"
        )
    cmc = np.cumsum(first_hit_hist) / num_valid
    return {"mAP": ap_sum / num_valid, "mINP": inp_sum / num_valid, "cmc": cmc, "num_valid_queries": num_valid}
