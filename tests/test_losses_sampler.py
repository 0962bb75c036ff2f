import math

import numpy as np
import pytest
import torch

from rgsyn.data.sampler import PKSampler
from rgsyn.downstream.losses import (LOSS_HEADS, cosface_loss, hard_triplet_loss, loss_head, pairwise_distance, reid_loss,
                                    smoothed_ce, trainer_losses)


def test_hard_triplet_hand_computed():
    # 1-D features: ids A={0, 1}, B={3, 7}
    feat = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchor 0: d_ap=1 (to 1), d_an=3 (to 3) -> 1-3+0.3 -> 0
    # anchor 1: d_ap=1, d_an=2 -> 1-2+0.3 -> 0
    # anchor 3: d_ap=4 (to 7), d_an=2 (to 1) -> 4-2+0.3 = 2.3
    # anchor 7: d_ap=4, d_an=6 -> 4-6+0.3 -> 0
    assert float(hard_triplet_loss(feat, labels, 0.3)) == pytest.approx(2.3 / 4, abs=1e-5)
    soft = np.mean([math.log1p(math.exp(d)) for d in (1 - 3, 1 - 2, 4 - 2, 4 - 6)])
    assert float(hard_triplet_loss(feat, labels, 0.0)) == pytest.approx(soft, abs=1e-5)


def test_triplet_skips_anchors_without_positive_and_grad_finite():
    feat = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1])  # anchor 2 has no positive; anchors 0,1 coincide (d=0)
    loss = hard_triplet_loss(feat, labels, 0.3)
    # anchors 0,1: d_ap=0, d_an=1 -> max(0, 0-1+0.3) = 0
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert torch.isfinite(feat.grad).all()
    d = pairwise_distance(feat.detach())
    assert float(d[0, 2]) == pytest.approx(1.0, abs=1e-5)


def test_reid_loss_sums_parts():
    torch.manual_seed(0)
    feat, logits, y = torch.randn(8, 4), torch.randn(8, 3), torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    out = reid_loss(feat, logits, y, 0.3, 0.1)
    ce = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1)
    assert float(out["ce"]) == pytest.approx(float(ce))
    assert float(out["loss"]) == pytest.approx(float(out["ce"] + out["triplet"]))


def test_synthetic_rows_smoothing_is_torchs_per_row():
    # 6 rows, the last 2 synthetic: the mean of torch's per-row losses at each row's own epsilon
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(6, 5, generator=g), torch.tensor([0, 1, 2, 3, 4, 0])
    real = torch.nn.functional.cross_entropy(logits[:4], y[:4], label_smoothing=0.1, reduction="sum")
    syn = torch.nn.functional.cross_entropy(logits[4:], y[4:], label_smoothing=1.0, reduction="sum")
    assert float(smoothed_ce(logits, y, 0.1, n_syn=2, eps_syn=1.0)) == pytest.approx(float(real + syn) / 6, abs=1e-6)
    # LSRO's uniform target: the synthetic rows' loss no longer depends on their label
    assert float(smoothed_ce(logits, y, 0.1, 2, 1.0)) == pytest.approx(
        float(smoothed_ce(logits, torch.tensor([0, 1, 2, 3, 0, 3]), 0.1, 2, 1.0)), abs=1e-6)
    # one epsilon for all rows, or no synthetic rows: torch's own call, to the bit
    same = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1)
    assert torch.equal(smoothed_ce(logits, y, 0.1, 2, 0.1), same) and torch.equal(smoothed_ce(logits, y, 0.1, 0, 1.0), same)
    # the losses pass it on: the triplet term is unchanged, CosFace smooths its margin logits
    feat = torch.randn(6, 3, generator=g)
    a, b = reid_loss(feat, logits, y, 0.3, 0.1), reid_loss(feat, logits, y, 0.3, 0.1, n_syn=2, syn_smoothing=1.0)
    assert torch.equal(a["triplet"], b["triplet"]) and float(b["ce"]) == pytest.approx(float(real + syn) / 6, abs=1e-6)
    cos = torch.tanh(logits)
    c = cosface_loss(feat, cos, y, 64.0, 0.35, n_syn=2, syn_smoothing=0.5)["loss"]
    m = 64.0 * (cos - 0.35 * torch.nn.functional.one_hot(y, 5))
    want = (torch.nn.functional.cross_entropy(m[:4], y[:4], reduction="sum")
            + torch.nn.functional.cross_entropy(m[4:], y[4:], label_smoothing=0.5, reduction="sum")) / 6
    assert float(c) == pytest.approx(float(want), rel=1e-6)


def test_every_trainer_loss_names_an_encoder_head():
    """One table from train.loss to the head: each loss trainer_losses knows has one the encoder builds."""
    from types import SimpleNamespace

    from rgsyn.encoder import HEADS

    assert set(LOSS_HEADS.values()) <= set(HEADS)
    assert loss_head("reid") == "linear" and loss_head("cosface") == "cosine"
    for loss in LOSS_HEADS:
        trainer_losses(SimpleNamespace(loss=loss, margin=0.3, label_smoothing=0.1, cos_scale=64.0, cos_margin=0.35))
    with pytest.raises(ValueError, match="train.loss = 'arcface'"):
        loss_head("arcface")


def test_pk_sampler():
    labels = [0] * 5 + [1] + [2] * 2 + [3] * 3 + [4]
    s = PKSampler(labels, p=2, k=3, seed=0)
    assert len(s) == 2
    seen = set()
    for batch in s.batches(10):
        ids = [labels[i] for i in batch]
        assert len(batch) == 6
        assert len(set(ids)) == 2  # P distinct identities, K each
        assert all(ids.count(y) == 3 for y in set(ids))
        seen |= set(ids)
    assert seen == {0, 1, 2, 3, 4}
    again = list(PKSampler(labels, 2, 3, seed=0).batches(10))
    assert again == list(PKSampler(labels, 2, 3, seed=0).batches(10))
    with pytest.raises(ValueError, match="only 5 identities"):
        PKSampler(labels, p=6, k=2, seed=0)
