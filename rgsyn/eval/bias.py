"""Demographic bias summaries: per-group accuracy, its spread, and the FRCSyn trade-off (TO) score.

RFW-style evaluation runs the same verification protocol separately on each demographic group (African, Asian,
Caucasian, Indian, ...). A model is fair when the per-group accuracies are close; FRCSyn ranks entries by the
trade-off TO = mean - std of the per-group accuracies, which rewards accuracy and penalises the gap at once.
The std here is the population std (np.std, ddof=0) over the groups.
"""
from __future__ import annotations

import numpy as np

from rgsyn.eval import verification


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor on any device, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _plain(key):
    """numpy scalars -> plain Python values, so the dict keys print and serialise (JSON, MLflow) cleanly."""
    return key.item() if isinstance(key, np.generic) else key


def group_accuracy(correct, groups) -> dict:
    """Fraction of `correct` (booleans) within each group label; keys in sorted order.

    Args:
        correct: [n] booleans (or 0/1), one per sample or pair.
        groups: [n] group labels (str or int), aligned with `correct`.
    """
    correct = _to_numpy(correct).astype(bool).reshape(-1)
    groups = _to_numpy(groups).reshape(-1)
    if correct.shape != groups.shape:
        raise ValueError(f"correct has {correct.shape[0]} entries but groups has {groups.shape[0]}")
    if correct.size == 0:
        raise ValueError("group_accuracy needs at least one sample")
    labels, inverse = np.unique(groups, return_inverse=True)
    hits = np.bincount(inverse, weights=correct, minlength=len(labels))
    counts = np.bincount(inverse, minlength=len(labels))
    return {_plain(g): float(h / c) for g, h, c in zip(labels, hits, counts)}


def summarize(per_group: dict) -> dict:
    """{"per_group", "mean", "std" (population), "TO" = mean - std} of per-group accuracies."""
    if not per_group:
        raise ValueError("summarize needs at least one group")
    values = np.array([float(v) for v in per_group.values()], dtype=np.float64)
    mean, std = float(values.mean()), float(values.std())
    return {"per_group": {k: float(v) for k, v in per_group.items()}, "mean": mean, "std": std, "TO": mean - std}


def evaluate_groups(embeddings_by_group: dict, nrof_folds: int = 10) -> dict:
    """RFW-style: K-fold verification accuracy per group, then `summarize` across groups.

    Args:
        embeddings_by_group: {group: (embeddings [2N, D], issame [N])}, each group its own pair list.
        nrof_folds: folds of the verification protocol, applied within each group.
    """
    if not embeddings_by_group:
        raise ValueError("evaluate_groups needs at least one group")
    per_group = {
        group: verification.evaluate(emb, issame, nrof_folds=nrof_folds)["accuracy"]
        for group, (emb, issame) in embeddings_by_group.items()
    }
    return summarize(per_group)
