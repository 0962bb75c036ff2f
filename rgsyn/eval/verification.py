"""Face verification accuracy with insightface's K-fold protocol (LFW, CFP-FP, AgeDB-30, RFW, ...).

Protocol:

* embeddings[2i] and embeddings[2i+1] form pair i; issame[i] says whether they show the same identity;
* each embedding is L2-normalised (a zero row stays zero, as with sklearn.preprocessing.normalize);
* the pair distance is the squared L2 distance of the normalised embeddings, in [0, 4];
* a pair is predicted "same" when distance < threshold, for thresholds np.arange(0, 4, 0.01);
* the pairs are cut into `nrof_folds` contiguous folds (sklearn KFold(shuffle=False)); for each fold the
  threshold with the best accuracy on the other folds is chosen (first one on ties, as np.argmax) and the
  accuracy of that threshold on the held-out fold is recorded;
* accuracy / accuracy_std are the mean and population std (np.std) of the held-out accuracies; threshold, tpr and
  fpr are means over folds of the chosen threshold and of its held-out TPR / FPR (0 when a fold lacks positives /
  negatives, as insightface does).
"""
from __future__ import annotations

import numpy as np

THRESHOLDS = np.arange(0, 4, 0.01)


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor on any device, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def kfold_splits(n: int, n_splits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs identical to sklearn KFold(n_splits, shuffle=False).split(range(n)).

    The first n % n_splits folds hold one extra sample. n_splits == 1 means train == test == everything, the
    behaviour of insightface's LFold wrapper (KFold itself refuses a single split).
    """
    if n_splits < 1:
        raise ValueError(f"nrof_folds must be >= 1, got {n_splits}")
    if n_splits > n:
        raise ValueError(f"cannot cut {n} pairs into {n_splits} folds")
    indices = np.arange(n)
    if n_splits == 1:
        return [(indices, indices)]
    sizes = np.full(n_splits, n // n_splits)
    sizes[: n % n_splits] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [
        (np.concatenate([indices[:lo], indices[hi:]]), indices[lo:hi])
        for lo, hi in zip(bounds[:-1], bounds[1:])
    ]


def pair_distances(embeddings) -> np.ndarray:
    """Squared L2 distance of each pair (rows 2i, 2i+1) after L2-normalising every row: shape [N]."""
    emb = _to_numpy(embeddings).astype(np.float64)
    if emb.ndim != 2 or emb.shape[0] % 2:
        raise ValueError(f"embeddings must be [2N, D] with pairs in consecutive rows, got shape {emb.shape}")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    norms[norms == 0] = 1.0  # leave zero vectors at zero instead of producing NaN
    emb = emb / norms
    return np.sum(np.square(emb[0::2] - emb[1::2]), axis=1)


def _confusion_counts(dist: np.ndarray, issame: np.ndarray, thresholds: np.ndarray):
    """(tp, fp, tn, fn), each [num_thresholds], for the rule `dist < threshold`.

    Counting by binary search over the sorted distances gives exactly the integer counts of the naive
    per-threshold comparison, in O((n + T) log n) time and O(n + T) memory.
    """
    pos = np.sort(dist[issame])
    neg = np.sort(dist[~issame])
    tp = np.searchsorted(pos, thresholds, side="left")  # side="left": strictly less than the threshold
    fp = np.searchsorted(neg, thresholds, side="left")
    return tp, fp, len(neg) - fp, len(pos) - tp


def evaluate(embeddings, issame, nrof_folds: int = 10) -> dict:
    """K-fold verification accuracy of paired embeddings (see the module docstring for the protocol).

    Args:
        embeddings: [2N, D] array or tensor; rows 2i and 2i+1 are pair i.
        issame: [N] booleans, True when pair i is a genuine (same-identity) pair.
        nrof_folds: number of contiguous folds (10 for LFW-style benchmarks).

    Returns:
        {"accuracy", "accuracy_std", "threshold", "tpr", "fpr"}: floats, fractions except the threshold
        (a squared distance in [0, 4)).
    """
    dist = pair_distances(embeddings)
    issame = _to_numpy(issame).astype(bool).reshape(-1)
    if issame.shape[0] != dist.shape[0]:
        raise ValueError(f"{dist.shape[0]} pairs of embeddings but {issame.shape[0]} issame labels")

    accs, chosen, tprs, fprs = [], [], [], []
    for train, test in kfold_splits(len(dist), nrof_folds):
        tp, fp, tn, fn = _confusion_counts(dist[train], issame[train], THRESHOLDS)
        best = int(np.argmax((tp + tn) / len(train)))  # first maximum on ties
        threshold = THRESHOLDS[best]
        tp, fp, tn, fn = (int(c[0]) for c in _confusion_counts(dist[test], issame[test], THRESHOLDS[best : best + 1]))
        accs.append((tp + tn) / len(test))
        chosen.append(threshold)
        tprs.append(tp / (tp + fn) if tp + fn else 0.0)
        fprs.append(fp / (fp + tn) if fp + tn else 0.0)

    return {
        "accuracy": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "threshold": float(np.mean(chosen)),
        "tpr": float(np.mean(tprs)),
        "fpr": float(np.mean(fprs)),
    }
