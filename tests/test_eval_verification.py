"""Tests for rgsyn.eval.verification: hand-computed K-fold cases and a naive per-threshold reference."""
import numpy as np
import pytest

from rgsyn.eval.verification import THRESHOLDS, evaluate, kfold_splits, pair_distances


def pairs_with_distances(dists, scale=3.0):
    """[2N, 2] embeddings whose normalised pair i has squared L2 distance dists[i] (= 2 - 2 cos angle).

    The rows are scaled by `scale` so the tests also exercise the L2 normalisation.
    """
    angles = np.arccos(1.0 - np.asarray(dists, dtype=float) / 2.0)
    emb = np.zeros((2 * len(dists), 2))
    emb[0::2, 0] = 1.0
    emb[1::2, 0], emb[1::2, 1] = np.cos(angles), np.sin(angles)
    return scale * emb


def test_pair_distances_normalise_and_square():
    # Pair 0: (3, 0) vs (0, 5) -> unit vectors (1,0), (0,1) -> squared distance 2.
    # Pair 1: (2, 0) vs (-7, 0) -> (1,0), (-1,0) -> 4.  Pair 2: identical directions -> 0.
    emb = np.array([[3, 0], [0, 5], [2, 0], [-7, 0], [1, 1], [4, 4]], dtype=float)
    np.testing.assert_allclose(pair_distances(emb), [2.0, 4.0, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="2N, D"):
        pair_distances(np.zeros((3, 2)))


def test_perfectly_separable():
    # 20 pairs alternating same (distance 0) / different (distance 2); 10 folds of 2 pairs = one of each.
    # Every threshold in (0, 2] is perfect on the training folds; the first of them on the grid is 0.01.
    # Each test fold: 1 TP + 1 TN -> accuracy 1, TPR 1, FPR 0.
    issame = np.array([True, False] * 10)
    emb = pairs_with_distances(np.where(issame, 0.0, 2.0))
    out = evaluate(emb, issame, nrof_folds=10)
    assert out["accuracy"] == 1.0 and out["accuracy_std"] == 0.0
    assert out["threshold"] == pytest.approx(0.01)
    assert out["tpr"] == 1.0 and out["fpr"] == 0.0


def test_crafted_two_fold_case():
    # Pairs: p0 same d=.305, p1 diff d=.705, p2 same d=.505, p3 diff d=.905; 2 folds: {p0,p1}, {p2,p3}.
    # Fold 0: train on {p2, p3}: perfect for t in (.505, .905] -> first grid value 0.51.
    #         test p0 (.305 < .51 -> same, correct), p1 (.705 -> diff, correct): acc 1, TPR 1/1, FPR 0/1.
    # Fold 1: train on {p0, p1}: perfect for t in (.305, .705] -> 0.31.
    #         test p2 (.505 >= .31 -> diff, WRONG), p3 (.905 -> diff, correct): acc 1/2, TPR 0/1, FPR 0/1.
    # accuracy = (1 + .5)/2 = .75, std = .25, threshold = (.51 + .31)/2 = .41, tpr = .5, fpr = 0.
    issame = np.array([True, False, True, False])
    out = evaluate(pairs_with_distances([0.305, 0.705, 0.505, 0.905]), issame, nrof_folds=2)
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["accuracy_std"] == pytest.approx(0.25)
    assert out["threshold"] == pytest.approx(0.41)
    assert out["tpr"] == pytest.approx(0.5)
    assert out["fpr"] == 0.0


def test_input_errors():
    with pytest.raises(ValueError, match="issame"):
        evaluate(np.ones((4, 3)), [True], nrof_folds=1)
    with pytest.raises(ValueError, match="folds"):
        evaluate(np.ones((4, 3)), [True, False], nrof_folds=3)


@pytest.mark.parametrize("n,k", [(10, 10), (23, 10), (7, 3), (100, 7), (6000, 10)])
def test_folds_match_sklearn_kfold(n, k):
    model_selection = pytest.importorskip("sklearn.model_selection")
    expected = list(model_selection.KFold(n_splits=k, shuffle=False).split(np.arange(n)))
    got = kfold_splits(n, k)
    assert len(got) == len(expected)
    for (tr, te), (etr, ete) in zip(got, expected):
        np.testing.assert_array_equal(tr, etr)
        np.testing.assert_array_equal(te, ete)


# ---- independent reference: loops over folds and thresholds, per-pair Python distances ---------------------------

def _reference(emb, issame, nrof_folds):
    dist = []
    for i in range(len(issame)):
        a, b = emb[2 * i], emb[2 * i + 1]
        a, b = a / np.sqrt(np.dot(a, a)), b / np.sqrt(np.dot(b, b))
        dist.append(float(np.dot(a - b, a - b)))
    dist, issame = np.array(dist), np.array(issame, dtype=bool)
    accs, thrs, tprs, fprs = [], [], [], []
    for test in np.array_split(np.arange(len(dist)), nrof_folds):
        train = np.setdiff1d(np.arange(len(dist)), test)
        best_t, best_acc = None, -1.0
        for t in THRESHOLDS:
            acc = np.mean((dist[train] < t) == issame[train])
            if acc > best_acc:  # strict: keeps the first maximum
                best_t, best_acc = t, acc
        pred = dist[test] < best_t
        truth = issame[test]
        accs.append(np.mean(pred == truth))
        thrs.append(best_t)
        tprs.append(np.sum(pred & truth) / max(np.sum(truth), 1))
        fprs.append(np.sum(pred & ~truth) / max(np.sum(~truth), 1))
    return np.mean(accs), np.std(accs), np.mean(thrs), np.mean(tprs), np.mean(fprs)


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_random_agreement_with_naive_reference(discrete, seed):
    rng = np.random.default_rng(seed)
    n_pairs = 37  # not a multiple of the fold count
    if discrete:
        # embeddings drawn from 4 fixed vectors: few distinct distances, so many ties on the threshold grid
        basis = rng.normal(size=(4, 5))
        emb = basis[rng.integers(0, 4, 2 * n_pairs)] * rng.uniform(0.5, 2.0, (2 * n_pairs, 1))
    else:
        emb = rng.normal(size=(2 * n_pairs, 5))
    issame = rng.random(n_pairs) < 0.5
    out = evaluate(emb, issame, nrof_folds=10)
    acc, std, thr, tpr, fpr = _reference(emb, issame, 10)
    assert out["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert out["accuracy_std"] == pytest.approx(std, abs=1e-12)
    assert out["threshold"] == pytest.approx(thr, abs=1e-12)
    assert out["tpr"] == pytest.approx(tpr, abs=1e-12)
    assert out["fpr"] == pytest.approx(fpr, abs=1e-12)


class _FakeTensor:
    """Mimics the torch.Tensor -> numpy chain (.detach().cpu().numpy()) without the slow torch import."""

    def __init__(self, array):
        self.array = np.asarray(array)

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.array


def test_tensor_input():
    rng = np.random.default_rng(3)
    emb, issame = rng.normal(size=(40, 8)), rng.random(20) < 0.5
    ref = evaluate(emb, issame, nrof_folds=5)
    out = evaluate(_FakeTensor(emb), _FakeTensor(issame), nrof_folds=5)
    assert out == pytest.approx(ref)
