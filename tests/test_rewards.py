"""Eq. 2–11 on hand-computed cases and against a plain-loop numpy implementation."""
import math

import numpy as np
import pytest
import torch

from rgsyn import rewards as R

E1 = math.exp(-1)


def t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_hand_computed_two_samples():
    gen, bank = t([[1, 0], [0, 1]]), t([[1, 0], [1, 0]])
    # prototype (1,0): cosines 1 and 0 -> (1+1)/2, (0+1)/2
    torch.testing.assert_close(R.semantic_reward(gen, bank), t([1.0, 0.5]))
    # sigma=1: k(g1,r)=1, k(g2,r)=exp(-2/2); k(g1,g2)=exp(-1); alpha=0.5
    # R_cov = (1 + e^-1)/2 - 0.5 e^-1 = 0.5; rows: 1 - 0.5e^-1, e^-1 - 0.5e^-1
    assert float(R.coverage_reward(gen, bank, 1.0, 0.5)) == pytest.approx(0.5, abs=1e-12)
    torch.testing.assert_close(R.coverage_reward_per_sample(gen, bank, 1.0, 0.5), t([1 - 0.5 * E1, 0.5 * E1]))
    # S_g = tr(cov) = (4 * 0.25) / (2-1) = 1; S_r = 0; R_exp = -((1 - 1.1 * 0) / 2)^2
    assert float(R.expansion_reward(gen, bank, 0.1, 2.0)) == pytest.approx(-0.25, abs=1e-12)


def test_expansion_leave_one_out_hand_computed():
    gen, bank = t([[1, 0], [0, 1], [1, 0]]), t([[1, 0], [0, 1]])
    # S_g = (2/9 + 8/9 + 2/9) / 2 = 2/3, S_r = 1 -> R_exp = -(2/3 - 1)^2 = -1/9 (eps 0, tau 1)
    assert float(R.expansion_reward(gen, bank, 0.0, 1.0)) == pytest.approx(-1 / 9, abs=1e-12)
    # without sample 0 or 2: S = 1 -> 0; without sample 1: S = 0 -> -1
    torch.testing.assert_close(R.expansion_reward_per_sample(gen, bank, 0.0, 1.0), t([-1 / 9, 8 / 9, -1 / 9]))


def test_combine_hand_computed():
    # two samples: each standardised component is (+1, -1) or (-1, +1)
    out = R.combine_rewards(t([1.0, 0.5]), t([3.0, 2.0]), t([0.0, 1.0]))
    x = 1.0 + 0.75 - 0.25  # (1 - 1e-8 relative, ignored at this tolerance)
    torch.testing.assert_close(out, t([math.tanh(x), math.tanh(-x)]), atol=1e-7, rtol=0)
    zero_spread = R.combine_rewards(t([0.3, 0.3]), t([1.0, 2.0]), t([5.0, 5.0]), weights=(1, 1, 1))
    torch.testing.assert_close(zero_spread, t([math.tanh(-1), math.tanh(1)]), atol=1e-7, rtol=0)


def _np_reference(gen, bank, sigma, alpha, eps, tau):
    """Eq. 2–9 written as loops, independent of rgsyn.rewards."""
    def nrm(v):
        return v / np.sqrt((v * v).sum())
    proto = nrm(bank.mean(0))
    sem = [(nrm(g) @ proto + 1) / 2 for g in gen]
    G, B = [nrm(g) for g in gen], [nrm(b) for b in bank]
    k = lambda u, v: math.exp(-((u - v) ** 2).sum() / (2 * sigma * sigma))  # noqa: E731
    align = np.mean([k(g, r) for g in G for r in B])
    redund = np.mean([k(G[i], G[j]) for i in range(len(G)) for j in range(len(G)) if i != j])

    def trace_cov(X):
        X = np.array(X)
        m = X.mean(0)
        return sum(((x - m) ** 2).sum() for x in X) / (len(X) - 1)
    exp = -(((trace_cov(G) - (1 + eps) * trace_cov(B)) / tau) ** 2)
    return np.array(sem), align - alpha * redund, exp


@pytest.mark.parametrize("seed", range(5))
def test_matches_independent_implementation(seed):
    rng = np.random.default_rng(seed)
    gen, bank = rng.normal(size=(6, 16)), rng.normal(size=(5, 16))
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)  # the memory bank is L2-normalised
    sem, cov, exp = _np_reference(gen, bank, 0.5, 0.3, 0.2, 0.7)
    g, b = torch.from_numpy(gen), torch.from_numpy(bank)
    np.testing.assert_allclose(R.semantic_reward(g, b).numpy(), sem, atol=1e-6)
    assert float(R.coverage_reward(g, b, 0.5, 0.3)) == pytest.approx(cov, abs=1e-6)
    assert float(R.expansion_reward(g, b, 0.2, 0.7)) == pytest.approx(exp, abs=1e-6)
    assert float(R.coverage_reward_per_sample(g, b, 0.5, 0.3).mean()) == pytest.approx(cov, abs=1e-6)
    # float32 inputs give the same numbers to float32 precision
    assert float(R.coverage_reward(g.float(), b.float(), 0.5, 0.3)) == pytest.approx(cov, abs=1e-5)
    c, e = rng.normal(size=6), rng.normal(size=6)
    comb = np.tanh(sum(w * (x - x.mean()) / (x.std() + 1e-8) for w, x in zip((1.0, 0.75, 0.25), (sem, c, e))))
    out = R.combine_rewards(torch.from_numpy(sem), torch.from_numpy(c), torch.from_numpy(e))
    np.testing.assert_allclose(out.numpy(), comb, atol=1e-6)


def test_group_size_errors():
    with pytest.raises(ValueError, match="at least 2 generated"):
        R.coverage_reward(t([[1.0, 0.0]]), t([[1.0, 0.0]]), 1.0, 0.5)
    with pytest.raises(ValueError, match="at least 3"):
        R.expansion_reward_per_sample(t([[1.0, 0.0], [0.0, 1.0]]), t([[1.0, 0.0], [0.0, 1.0]]), 0.1, 1.0)
