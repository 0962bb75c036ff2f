"""Hand-computed cases for the RL loss pieces, the advantage tracker and the class sampler."""
import math

import numpy as np
import pytest
import torch

from rgsyn.rl.advantages import PerClassTracker
from rgsyn.rl.cgpo import ClassSampler
from rgsyn.rl.loss import dpok_loss, gaussian_kl, policy_loss
from rgsyn.generator.sampler import gaussian_log_prob


def test_kl_closed_form_matches_log_prob_difference_expectation():
    # KL(p||q) = E_p[log p - log q]; with shared std: |mp - mq|^2 / (2 std^2) per dim
    mp, mq, std = torch.tensor([[[[1.0, 2.0]]]]), torch.tensor([[[[0.0, 0.0]]]]), torch.tensor([2.0])
    assert float(gaussian_kl(mp, mq, std)) == pytest.approx((1 + 4) / 2 / (2 * 4))
    torch.manual_seed(0)
    mp, mq, std = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4), torch.tensor([0.7])
    x = mp + std * torch.randn(20000, 3, 4, 4)
    mc = (gaussian_log_prob(x, mp, std.expand(20000)) - gaussian_log_prob(x, mq, std.expand(20000))).mean()
    assert float(mc) == pytest.approx(float(gaussian_kl(mp, mq, std)), rel=0.02)


def test_policy_loss_hand_computed():
    lp, old = torch.log(torch.tensor([1.5, 0.5, 1.0])), torch.zeros(3)
    adv = torch.tensor([1.0, -1.0, 2.0])
    loss, s = policy_loss(lp, old, adv, clip_range=0.2)
    # r = 1.5, 0.5, 1.0; A=1: max(-1.5, -1.2) = -1.2; A=-1: max(0.5, 0.8) = 0.8; A=2: max(-2, -2) = -2
    assert float(loss) == pytest.approx((-1.2 + 0.8 - 2.0) / 3)
    assert s["clip_frac"] == pytest.approx(2 / 3)
    ratio_one, s1 = policy_loss(old, old, adv, 0.2)
    assert s1["ratio_mean"] == 1.0 and float(ratio_one) == pytest.approx(-float(adv.mean()))


def test_dpok_loss_adds_weighted_kl():
    z = torch.zeros(2)
    m, r = torch.ones(2, 1, 1, 1), torch.zeros(2, 1, 1, 1)
    loss, s = dpok_loss(z, z, torch.tensor([1.0, 1.0]), m, r, torch.tensor([1.0, 1.0]), 0.2, kl_weight=0.1)
    assert s["kl"] == pytest.approx(0.5) and float(loss) == pytest.approx(-1.0 + 0.05)


def test_tracker_batch_fallback_then_per_class():
    tr = PerClassTracker(buffer_size=4, min_count=3)
    adv = tr.update([0, 0, 1, 1], [1.0, 3.0, 5.0, 7.0])
    # too few per class: batch mean 4, std sqrt(5)
    np.testing.assert_allclose(adv, (np.array([1, 3, 5, 7]) - 4) / (math.sqrt(5) + 1e-6))
    adv = tr.update([0, 0], [2.0, 2.0])  # class 0 now has [1, 3, 2, 2]: mean 2, std sqrt(0.5)
    np.testing.assert_allclose(adv, [0.0, 0.0], atol=1e-9)
    adv = tr.update([0], [4.0])  # window of 4: [3, 2, 2, 4] -> mean 2.75, std sqrt(0.6875)
    np.testing.assert_allclose(adv, [(4 - 2.75) / (math.sqrt(0.6875) + 1e-6)])


def test_class_sampler_prefers_unseen_then_high_variance():
    cs = ClassSampler(4, floor=0.01, smoothing=0.5, explore_bonus=1.0, seed=0)
    np.testing.assert_allclose(cs.probs(), [0.25] * 4)
    cs.update([0, 0, 1, 1, 2, 2], [0.0, 2.0, 1.0, 1.0, 0.0, 0.2])  # var 1, 0, 0.01; class 3 unseen
    w = np.array([1.0, 0.01, 0.01, 0.01 + 1.0])
    np.testing.assert_allclose(cs.probs(), w / w.sum())
    cs.update([0, 0], [1.0, 1.0])  # var 0 -> smoothed 0.5 * 1 + 0.5 * 0 = 0.5
    assert cs.var[0] == pytest.approx(0.5)
    picks = cs.sample(3)
    assert len(set(picks.tolist())) == 3
