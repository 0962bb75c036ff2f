"""bench/selection_truth.py's bookkeeping on known cases: the label swap and the kept rows' precision."""
import numpy as np
import torch

from tests.conftest import load_bench

bench = load_bench("selection_truth")


def test_swap_labels_swaps_exactly_q_to_another_identity():
    pids = [p for p in range(1, 11) for _ in range(4)]  # 40 rows, 10 identities
    labels, swapped = bench.swap_labels(pids, 0.3, np.random.default_rng(0))
    labels, pids = np.array(labels), np.array(pids)
    assert swapped.sum() == 12
    assert np.all(labels[swapped] != pids[swapped])  # a swapped row names another identity …
    assert set(labels[swapped]) <= set(pids)  # … of the pool
    assert np.all(labels[~swapped] == pids[~swapped])
    assert bench.swap_labels(pids, 0.0, np.random.default_rng(0))[1].sum() == 0


def fake_draw(q=0.3, s=16, n_real=4, seed=0):
    """Candidates whose first feature says whether the label is right; real rows are padding."""
    g = torch.Generator().manual_seed(seed)

    def draw():
        correct = torch.rand(s, generator=g) >= q
        x = torch.cat([torch.zeros(n_real), correct.float()])
        return x, torch.zeros(n_real + s, dtype=torch.long), n_real, correct
    return draw


def test_a_scorer_that_ranks_the_swapped_rows_last_keeps_only_correct_rows():
    oracle = lambda x, y, n: 1.0 - x[n:]  # noqa: E731  (correct: Δl 0, swapped: 1)
    r = bench.measure(fake_draw(q=0.3), {"oracle": oracle}, ratio=0.5, batches=50)
    # 8 of 16 kept; a batch with fewer than 8 correct rows cannot reach 1: the bound is min(correct, 8) / 8
    draw = fake_draw(q=0.3)
    best = sum(min(int(draw()[3].sum()), 8) for _ in range(50)) / (50 * 8)
    assert r["oracle"]["kept"] == 50 * 8
    assert r["oracle"]["auc"] == 1.0
    assert r["oracle"]["precision"] == best and best > 0.9
    exact = bench.measure(fake_draw(q=0.1), {"oracle": oracle}, ratio=0.25, batches=20)
    assert exact["oracle"]["precision"] == 1.0  # 4 kept, ≥ 4 correct in every batch at q 0.1
    worst = bench.measure(fake_draw(q=0.3), {"anti": lambda x, y, n: x[n:]}, ratio=0.25, batches=50)
    assert worst["anti"]["precision"] < 0.1 and worst["anti"]["auc"] == 0.0


def test_a_random_scorer_keeps_the_pools_precision():
    g = torch.Generator().manual_seed(1)
    rand = lambda x, y, n: torch.rand(len(y) - n, generator=g)  # noqa: E731
    r = bench.measure(fake_draw(q=0.3), {"random": rand}, ratio=0.5, batches=400)
    assert abs(r["candidate_precision"] - 0.7) < 0.02
    assert abs(r["random"]["precision"] - r["candidate_precision"]) < 0.03
    assert abs(r["random"]["auc"] - 0.5) < 0.03


def test_t_interval_and_summary_pairing():
    m, lo, hi = bench.t_interval([0.7, 0.8, 0.9])
    assert abs(m - 0.8) < 1e-12 and lo < 0.8 < hi and abs((hi - m) - (m - lo)) < 1e-12
    per_seed = [{"pool_precision": 0.7, "states": {"1": {
        "candidate_precision": c, **{k: {"precision": c + d, "auc": 0.5, "auc_seen": 0.5} for k, d in
                                     (("exact", 0.1 + e), ("fast", 0.05), ("random", e))}}}}
        for c, e in ((0.70, 0.0), (0.72, 0.01), (0.69, -0.02))]
    s = bench.summarise(per_seed, "1")
    assert abs(s["modes"]["exact"]["vs_candidates"]["mean"] - (0.1 + (0.0 + 0.01 - 0.02) / 3)) < 1e-9
    assert abs(s["modes"]["exact"]["vs_random"]["mean"] - 0.1) < 1e-9  # exact − random = 0.1 in every seed
    assert s["modes"]["random"]["vs_random"] is None
