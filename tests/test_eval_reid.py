"""Tests for rgsyn.eval.reid: hand-computed Market-1501 cases and a loop-based reference on random inputs."""
import numpy as np
import pytest

from rgsyn.eval.reid import evaluate


def test_same_camera_true_match_is_junk():
    # Query: pid 1, cam 0. Gallery sorted by distance:
    #   g0 pid1 cam0 d=.1  -> same pid AND same cam: junk, removed (it would be a rank-1 hit otherwise)
    #   g1 pid2 cam0 d=.2  -> other pid from the query's camera: kept, a miss at rank 1
    #   g2 pid1 cam1 d=.3  -> true match at rank 2
    #   g3 pid3 cam1 d=.4  -> miss at rank 3
    # AP = precision@2 = 1/2; INP = 1 match / rank 2 = 1/2; CMC = [0, 1, 1].
    out = evaluate([[0.1, 0.2, 0.3, 0.4]], [1], [1, 2, 1, 3], [0], [0, 0, 1, 1], max_rank=3)
    assert out["mAP"] == pytest.approx(0.5)
    assert out["mINP"] == pytest.approx(0.5)
    np.testing.assert_allclose(out["cmc"], [0, 1, 1])
    assert out["num_valid_queries"] == 1


def test_query_without_valid_match_is_skipped():
    # Same gallery as above plus two more queries:
    #   q1 pid 3, cam 1: its only gallery image g3 is cam 1 -> junk -> no valid match -> skipped.
    #   q2 pid 7: absent from the gallery -> skipped.
    # Averages are over q0 alone: the numbers of the previous test.
    out = evaluate(
        [[0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 0.0, 0.0], [0.4, 0.3, 0.2, 0.1]],
        [1, 3, 7], [1, 2, 1, 3], [0, 1, 0], [0, 0, 1, 1], max_rank=3,
    )
    assert out["num_valid_queries"] == 1
    assert out["mAP"] == pytest.approx(0.5)
    assert out["mINP"] == pytest.approx(0.5)
    np.testing.assert_allclose(out["cmc"], [0, 1, 1])


def test_ties_keep_gallery_order():
    # All distances equal, so the ranking is the gallery order (stable sort). Query pid 1 cam 0, all gallery cam 1.
    # Matches first:  pids [1, 1, 2, 2] -> hits at ranks 1, 2: AP = (1/1 + 2/2)/2 = 1, INP = 2/2 = 1, CMC [1,1,1,1].
    out = evaluate(np.zeros((1, 4)), [1], [1, 1, 2, 2], [0], [1, 1, 1, 1], max_rank=4)
    assert out["mAP"] == pytest.approx(1.0)
    assert out["mINP"] == pytest.approx(1.0)
    np.testing.assert_allclose(out["cmc"], [1, 1, 1, 1])
    # Matches last: pids [2, 2, 1, 1] -> hits at ranks 3, 4: AP = (1/3 + 2/4)/2 = 5/12, INP = 2/4, CMC [0,0,1,1].
    out = evaluate(np.zeros((1, 4)), [1], [2, 2, 1, 1], [0], [1, 1, 1, 1], max_rank=4)
    assert out["mAP"] == pytest.approx(5 / 12)
    assert out["mINP"] == pytest.approx(0.5)
    np.testing.assert_allclose(out["cmc"], [0, 0, 1, 1])


def test_cmc_padded_when_gallery_shorter_than_max_rank():
    # Gallery pids [1, 3, 2] at distances .1, .2, .3 for both queries, max_rank 5 > 3 gallery entries.
    # q0 (pid 1) first hit at rank 1; q1 (pid 2) first hit at rank 3. Curves padded with their last value:
    #   q0: [1,1,1,1,1], q1: [0,0,1,1,1] -> mean [0.5, 0.5, 1, 1, 1].
    dist = [[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]]
    out = evaluate(dist, [1, 2], [1, 3, 2], [0, 0], [1, 1, 1], max_rank=5)
    np.testing.assert_allclose(out["cmc"], [0.5, 0.5, 1, 1, 1])
    assert out["cmc"].shape == (5,)
    # APs: q0 1, q1 1/3 -> mAP 2/3; INPs: 1/1 and 1/3 -> mINP 2/3.
    assert out["mAP"] == pytest.approx(2 / 3)
    assert out["mINP"] == pytest.approx(2 / 3)


def test_minp_hand_case():
    # Gallery (all cam 1, queries cam 0) pids [1, 5, 1, 5, 1, 5, 2].
    # q0 pid 1, distances 0..5, 9 -> ranking g0..g6 -> pids [1,5,1,5,1,5,2] -> hits at ranks 1, 3, 5.
    #   AP = (1/1 + 2/3 + 3/5)/3 = (15/15 + 10/15 + 9/15)/3 = 34/45;  INP = 3 matches / rank 5 = 3/5.
    # q1 pid 2, g6 at 0.5 is second after g1 at 0 -> single hit at rank 2: AP = 1/2, INP = 1/2.
    # mAP = (34/45 + 1/2)/2 = 113/180; mINP = (3/5 + 1/2)/2 = 11/20; CMC@3: q0 [1,1,1], q1 [0,1,1] -> [.5, 1, 1].
    dist = [[0, 1, 2, 3, 4, 5, 9], [1, 0, 2, 3, 4, 5, 0.5]]
    out = evaluate(dist, [1, 2], [1, 5, 1, 5, 1, 5, 2], [0, 0], [1] * 7, max_rank=3)
    assert out["mAP"] == pytest.approx(113 / 180)
    assert out["mINP"] == pytest.approx(11 / 20)
    np.testing.assert_allclose(out["cmc"], [0.5, 1, 1])


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

    def __array__(self, *args, **kwargs):  # a CUDA tensor cannot be read this way: make sure we never do
        raise AssertionError("np.asarray called on a tensor")


def test_tensor_inputs_and_chunking():
    rng = np.random.default_rng(0)
    dist = rng.random((13, 17))
    args = (rng.integers(0, 4, 13), rng.integers(0, 4, 17), rng.integers(0, 2, 13), rng.integers(0, 2, 17))
    ref = evaluate(dist, *args, max_rank=20)
    out = evaluate(_FakeTensor(dist), *map(_FakeTensor, args), max_rank=20, chunk_size=4)
    assert out["num_valid_queries"] == ref["num_valid_queries"]
    assert out["mAP"] == pytest.approx(ref["mAP"], abs=1e-12)
    assert out["mINP"] == pytest.approx(ref["mINP"], abs=1e-12)
    np.testing.assert_allclose(out["cmc"], ref["cmc"], atol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="g_pids"):
        evaluate(np.zeros((1, 3)), [1], [1, 2], [0], [1, 1, 1])
    with pytest.raises(ValueError, match="2-D"):
        evaluate(np.zeros(3), [1], [1, 2, 3], [0], [1, 1, 1])
    with pytest.raises(ValueError, match="no query has a valid match"):
        evaluate(np.zeros((1, 2)), [1], [1, 2], [0], [0, 1])  # only match is same-camera junk


# ---- independent reference: one query at a time, plain Python lists --------------------------------------------

def _reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    aps, inps, curves = [], [], []
    for i in range(len(q_pids)):
        # stable order written as a sort on (distance, gallery index)
        ranked = sorted(range(len(g_pids)), key=lambda j: (distmat[i][j], j))
        labels = []
        for j in ranked:
            if g_pids[j] == q_pids[i] and g_camids[j] == q_camids[i]:
                continue
            labels.append(1 if g_pids[j] == q_pids[i] else 0)
        if sum(labels) == 0:
            continue
        hits, precisions = 0, []
        for r, y in enumerate(labels, start=1):
            if y:
                hits += 1
                precisions.append(hits / r)
        aps.append(sum(precisions) / len(precisions))
        last = max(r for r, y in enumerate(labels, start=1) if y)
        inps.append(sum(labels) / last)
        first = labels.index(1) + 1
        curves.append([1.0 if k >= first else 0.0 for k in range(1, max_rank + 1)])
    return np.mean(aps), np.mean(inps), np.mean(curves, axis=0), len(aps)


@pytest.mark.parametrize("integer_distances", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_random_agreement_with_loop_reference(integer_distances, seed):
    rng = np.random.default_rng(seed)
    nq, ng = 25, 40
    dist = rng.integers(0, 5, (nq, ng)).astype(float) if integer_distances else rng.random((nq, ng))
    q_pids, g_pids = rng.integers(0, 8, nq), rng.integers(0, 8, ng)
    q_cams, g_cams = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    max_rank = 50  # longer than the gallery: exercises padding too
    out = evaluate(dist, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank, chunk_size=7)
    m_ap, m_inp, cmc, n_valid = _reference(dist.tolist(), q_pids.tolist(), g_pids.tolist(),
                                              q_cams.tolist(), g_cams.tolist(), max_rank)
    assert out["num_valid_queries"] == n_valid
    assert out["mAP"] == pytest.approx(m_ap, abs=1e-12)
    assert out["mINP"] == pytest.approx(m_inp, abs=1e-12)
    np.testing.assert_allclose(out["cmc"], cmc, atol=1e-12)


def test_ap_matches_sklearn_average_precision():
    # With every positive retrieved, sklearn's AP (sum over recall steps of precision) equals mean precision at
    # hits. Scores are -rank on the stable order, so sklearn sees no ties.
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    nq, ng = 20, 30
    dist = rng.integers(0, 4, (nq, ng)).astype(float)
    q_pids, g_pids = rng.integers(0, 5, nq), rng.integers(0, 5, ng)
    q_cams, g_cams = rng.integers(0, 2, nq), rng.integers(0, 2, ng)
    aps = []
    for i in range(nq):
        order = np.lexsort((np.arange(ng), dist[i]))
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        y = (g_pids[order] == q_pids[i])[keep]
        if y.any():
            aps.append(metrics.average_precision_score(y, -np.arange(len(y))))
    out = evaluate(dist, q_pids, g_pids, q_cams, g_cams)
    assert out["num_valid_queries"] == len(aps)
    assert out["mAP"] == pytest.approx(np.mean(aps), abs=1e-12)
