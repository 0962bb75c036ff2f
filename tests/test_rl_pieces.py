"""Hand-computed cases for the RL loss pieces, group-relative advantages and the class sampler."""
import math

import numpy as np
import pytest
import torch

from rgsyn.rl.advantages import group_advantages
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


def test_group_advantages_standardise_within_each_identity():
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    rewards = [1.0, 3.0, 5.0, 7.0, 10.0, 10.0, 12.0, 8.0]
    adv = group_advantages(labels, rewards)
    # identity 0: mean 4, population std sqrt(5); identity 1: mean 10, std sqrt(2)
    np.testing.assert_allclose(adv[:4], (np.array([1, 3, 5, 7]) - 4) / (math.sqrt(5) + 1e-6))
    np.testing.assert_allclose(adv[4:], (np.array([10, 10, 12, 8]) - 10) / (math.sqrt(2) + 1e-6))
    # a uniformly better identity gets no advantage over a worse one: only within-group order counts
    shifted = group_advantages(labels, [r + (100 if y == 1 else 0) for y, r in zip(labels, rewards)])
    np.testing.assert_allclose(shifted, adv)
    # interleaved labels: same values per sample
    np.testing.assert_allclose(group_advantages([1, 0, 1, 0], [2.0, 1.0, 4.0, 3.0]), [-1, -1, 1, 1], atol=1e-5)
    np.testing.assert_allclose(group_advantages([0, 0], [3.0, 3.0]), [0.0, 0.0])  # no spread: no signal
    with pytest.raises(ValueError, match="rl.group_size"):
        group_advantages([0, 0, 1], [1.0, 2.0, 3.0])


def test_clip_binds_once_the_ratio_leaves_the_range():
    """ratio e^0.5 with A > 0: the clipped term (1 + eps) A is the max of the negatives' min, so the
    gradient through the ratio vanishes; with A < 0 and ratio e^-0.5 likewise."""
    lp = torch.tensor([0.5, -0.5, 0.01], requires_grad=True)
    old = torch.zeros(3)
    adv = torch.tensor([1.0, -1.0, 1.0])
    loss, s = policy_loss(lp, old, adv, clip_range=0.1)
    loss.backward()
    assert s["clip_frac"] == pytest.approx(2 / 3)
    assert float(loss.detach()) == pytest.approx((-1.1 + 0.9 - math.exp(0.01)) / 3)
    assert lp.grad[0] == 0 and lp.grad[1] == 0  # clipped: no gradient
    assert lp.grad[2] == pytest.approx(-math.exp(0.01) / 3)  # inside the range: the plain surrogate


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


def test_reference_policy_is_the_cold_start_and_leaves_the_trainable_table_in_place():
    """The shared label table must stay the trainable parameter after a reference call (functional_call
    does not put a tied parameter back), and the reference must stay the cold-start model."""
    from rgsyn.generator.dit import build_dit, label_tables, reset_class_embedding, tie_block_embeddings
    from rgsyn.rl.policy import Policy

    torch.manual_seed(0)
    model = reset_class_embedding(tie_block_embeddings(build_dit("tiny", 8, 4, num_classes=5)), 5)
    with torch.no_grad():
        label_tables(model)[0].embedding_table.weight.normal_()
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([100, 600]), torch.tensor([1, 3])
    before = model(x, timestep=t, class_labels=y).sample.detach()
    pol = Policy(model, lora_rank=2, full_finetune=False, seed=0, lora_targets=["to_q", "to_k", "to_v", "to_out.0"])
    table = label_tables(model)[0].embedding_table.weight
    with torch.no_grad():  # the policy moves: table and LoRA B
        table.add_(1.0)
        for k, v in pol.params.items():
            if "lora_B" in k:
                v.add_(0.1)
    moved = model(x, timestep=t, class_labels=y).sample.detach()
    with pol.reference() as ref:
        torch.testing.assert_close(ref(x, timestep=t, class_labels=y).sample, before)
    assert label_tables(model)[0].embedding_table.weight is table and table.requires_grad
    torch.testing.assert_close(model(x, timestep=t, class_labels=y).sample, moved)  # back to the policy
    assert not torch.allclose(moved, before)


def test_lora_targets_reach_the_conditioning_layers_and_survive_the_checkpoint():
    """rl.lora_targets decides which layers get adapters; a checkpoint loaded with the same targets and
    merged reproduces the policy (adapters on the adaLN modulation included)."""
    import copy

    from rgsyn.generator.dit import build_dit, label_tables, reset_class_embedding, tie_block_embeddings
    from rgsyn.generator.adapters import load_adapter_state
    from rgsyn.rl.policy import Policy

    torch.manual_seed(0)
    model = reset_class_embedding(tie_block_embeddings(build_dit("tiny", 8, 4, num_classes=5)), 5)
    with torch.no_grad():
        label_tables(model)[0].embedding_table.weight.normal_()
    base = copy.deepcopy(model)
    targets = ["to_q", "to_v", "norm1.linear"]
    pol = Policy(model, lora_rank=2, full_finetune=False, seed=0, lora_targets=targets)
    adapted = {k.split(".lora_")[0].split("transformer_blocks.0.")[-1] for k in pol.params if ".lora_B" in k}
    assert {"attn1.to_q", "attn1.to_v", "norm1.linear"} <= adapted and "attn1.to_k" not in adapted
    with torch.no_grad():
        for k, v in pol.params.items():
            if "lora_B" in k:
                v.normal_(std=0.1)
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([100, 600]), torch.tensor([1, 3])
    want = model(x, timestep=t, class_labels=y).sample.detach()
    loaded = load_adapter_state(base, pol.state(), 2, False, merge=True, lora_targets=targets)
    torch.testing.assert_close(loaded(x, timestep=t, class_labels=y).sample, want, rtol=1e-4, atol=1e-5)
