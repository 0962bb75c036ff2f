"""Dynamic sample selection (paper §4.3, eq. 12): Δl exact vs hand / manual lookahead, the fast first-order mode,
selection rule, untouched model state, and the step."""
import copy
import math

import pytest
from scipy.stats import spearmanr
import torch
import torch.nn.functional as F
from torch import nn

from rgsyn.downstream.losses import reid_loss
from rgsyn.downstream.selection import (delta_exact, delta_fast, dss_step, encoder_split, identity_loss,
                                        select, synthetic_share)
from rgsyn.encoder import EncoderConfig, IdentityEncoder


class Linear(nn.Module):
    """logits = x Wᵀ, feat = x: a model whose lookahead is computed by hand."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x):
        return x, x @ self.w.t()


class TinyEncoder(nn.Module):
    """IdentityEncoder's layout on flat inputs: backbone -> proj -> BNNeck (fixed bias) -> classifier."""

    def __init__(self, d_in=6, d=5, c=4, backbone=True):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(d_in, 8), nn.BatchNorm1d(8), nn.ReLU()) if backbone else nn.Flatten()
        self.proj = nn.Linear(8 if backbone else d_in, d)
        self.bnneck = nn.BatchNorm1d(d)
        self.bnneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(d, c, bias=False)

    def forward(self, x):
        feat = self.proj(self.backbone(x))
        return feat, self.classifier(self.bnneck(feat))


def ce_loss(feat, logits, y):
    return F.cross_entropy(logits, y)


def reid(feat, logits, y):
    return reid_loss(feat, logits, y, 0.3, 0.1)


def tiny_batch(seed=0, n_real=8, n_syn=6, d_in=6, c=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_real + n_syn, d_in, generator=g)
    y = torch.cat([torch.arange(n_real) % c, torch.randint(0, c, (n_syn,), generator=g)])
    return x, y, n_real


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_exact_and_fast_by_hand():
    # W = 0, two classes: one real (x=[1,0], y=0), candidates a (x=[0,1], y=1), b (x=[1,0], y=1).
    # mean-CE gradient G = (1/3) Σ (p − e) xᵀ = [[0, 1/6], [0, −1/6]]; w' = −ηG.
    # a: logits' = (−η/6, η/6) -> Δl = log(1 + e^{−η/3}) − log 2; b: logits' = 0 -> Δl = 0.
    # fast: −η ⟨(p_a − e_a) x_aᵀ, G⟩ = −η/6 (the slope of Δl_a at η = 0), 0 for b.
    model = Linear(torch.zeros(2, 2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    eta = 3.0
    exact = delta_exact(model, x, y, 1, eta, ce_loss)
    torch.testing.assert_close(exact, torch.tensor([math.log(1 + math.exp(-1)) - math.log(2), 0.0]))
    fast = delta_fast(encoder_split(model, "all"), x, y, 1, eta, ce_loss)
    torch.testing.assert_close(fast, torch.tensor([-0.5, 0.0]))
    assert select(exact, 0.5).tolist() == [0] and select(fast, 0.5).tolist() == [0]


def test_fast_is_the_analytic_softmax_form_for_a_linear_classifier():
    # ∇_W l_i = (p_i − e_i) x_iᵀ and G = (P − E)ᵀ X / B, so Δl_i ≈ −η (p_i − e_i)ᵀ G x_i.
    g = torch.Generator().manual_seed(1)
    w = torch.randn(4, 6, generator=g)
    x, y, n = tiny_batch(1)
    eta = 0.05
    p = torch.softmax(x @ w.t(), 1)
    err = p - F.one_hot(y, 4).float()  # (B, C)
    grad = err.t() @ x / len(x)  # (C, D)
    want = -eta * ((err[n:] @ grad) * x[n:]).sum(1)
    got = delta_fast(encoder_split(Linear(w), "all"), x, y, n, eta, ce_loss)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_exact_equals_a_manual_sgd_step_on_a_copy():
    torch.manual_seed(0)
    model = TinyEncoder().train()
    x, y, n = tiny_batch(2)
    eta = 0.3
    feat, logits = model(x)
    grads = torch.autograd.grad(reid(feat, logits, y)["loss"], [p for p in model.parameters() if p.requires_grad])
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for p, gr in zip([p for p in moved.parameters() if p.requires_grad], grads):
            p -= eta * gr
        want = identity_loss(moved(x)[1][n:], y[n:]) - identity_loss(logits[n:], y[n:])
    torch.testing.assert_close(delta_exact(model, x, y, n, eta, reid), want, rtol=1e-5, atol=1e-6)


def test_fast_equals_the_first_order_term_of_the_head():
    """Backbone without parameters: the head is every parameter, so fast = −η ∇l_i·∇L exactly."""
    torch.manual_seed(0)
    model = TinyEncoder(backbone=False).train()
    x, y, n = tiny_batch(3)
    eta = 0.1
    params = [p for p in model.parameters() if p.requires_grad]
    big = torch.autograd.grad(reid(*model(x), y)["loss"], params)
    want = []
    for i in range(n, len(x)):  # per-sample gradients, each on the full (BN-coupled) batch
        gi = torch.autograd.grad(identity_loss(model(x)[1][i:i + 1], y[i:i + 1]).sum(), params)
        want.append(-eta * sum((a * b).sum() for a, b in zip(gi, big)))
    split = encoder_split(model, "head")
    got = delta_fast(split, split.prefix(x), y, n, eta, reid)
    torch.testing.assert_close(got, torch.stack(want), rtol=1e-4, atol=1e-7)


def test_fast_ranks_like_exact_for_a_small_step():
    torch.manual_seed(0)
    model = TinyEncoder().train()
    x, y, n = tiny_batch(4, n_real=16, n_syn=24)
    eta = 1e-4
    exact = delta_exact(model, x, y, n, eta, reid)
    fast = delta_fast(encoder_split(model, "all"), x, y, n, eta, reid)
    assert spearmanr(fast.numpy(), exact.numpy()).statistic > 0.99
    assert (fast - exact).abs().max() < 1e-3 * fast.abs().max()  # the rest is O(η²)


def test_select_keeps_the_smallest():
    d = torch.tensor([0.3, -1.0, 0.3, 0.2, float("nan")])
    assert select(d, 0.4).tolist() == [1, 3]  # k = ceil(2.0) = 2, batch order
    assert select(d, 0.5).tolist() == [0, 1, 3]  # k = ceil(2.5) = 3; the tie 0.3/0.3 goes to the first
    assert select(d, 0.8).tolist() == [0, 1, 2, 3]  # NaN last
    assert select(d, 1.0).tolist() == [0, 1, 2, 3, 4] and select(d, 0.0).tolist() == []
    assert select(d, 0.01).tolist() == [1]
    assert len(select(torch.zeros(10), 0.3)) == 3  # 0.3·10 is not rounded up to 4
    assert select(torch.zeros(3), 0.5).tolist() == [0, 1]
    with pytest.raises(ValueError, match="ratio"):
        select(d, 1.5)


def resnet(c=5):
    torch.manual_seed(0)
    return IdentityEncoder(EncoderConfig("test_resnet", c, 16, 32, 16)).train()


def test_splits_compute_the_model_and_lookahead_leaves_it_untouched():
    model = resnet()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 3, 32, 16, generator=g)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 3, 4])
    before = state(model)
    with torch.no_grad():
        ref = model(x)
    for scope in ("head", "layer4", "layer3", "all"):
        split = encoder_split(model, scope)
        with torch.no_grad():
            out = split.suffix(split.prefix(x))
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
    splits = [encoder_split(model, scope) for scope in ("head", "layer4")]
    zs = [split.prefix(x) for split in splits]  # the trainer's own forward (moves prefix BN stats)
    base = state(model)
    assert not torch.equal(base["bnneck.running_mean"], before["bnneck.running_mean"])
    delta_exact(model, x, y, 6, 0.01, reid)
    for split, z in zip(splits, zs):
        delta_fast(split, z, y, 6, 0.01, reid)
    after = state(model)
    assert all(torch.equal(after[k], base[k]) for k in base)  # weights, running stats, batch counters
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="scope"):
        encoder_split(model, "fc")


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_step_with_ratio_one_is_a_plain_step(mode):
    a, b = resnet(), resnet()
    g = torch.Generator().manual_seed(1)
    rx, sx = torch.randn(8, 3, 32, 16, generator=g), torch.randn(4, 3, 32, 16, generator=g)
    ry, sy = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), torch.tensor([4, 4, 0, 1])
    opt_a, opt_b = torch.optim.Adam(a.parameters(), lr=0.01), torch.optim.Adam(b.parameters(), lr=0.01)
    for _ in range(2):
        sa = dss_step(a, opt_a, rx, ry, sx, sy, ratio=1.0, mode="off", loss_fn=reid)
        sb = dss_step(b, opt_b, rx, ry, sx, sy, ratio=1.0, mode=mode, loss_fn=reid)
        assert sb["kept"] == sb["candidates"] == 4 and sb["delta"].shape == (4,)
        assert sa["losses"]["loss"] == pytest.approx(sb["losses"]["loss"], rel=1e-6)
    sa_, sb_ = state(a), state(b)
    for k in sa_:
        torch.testing.assert_close(sb_[k], sa_[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["exact", "fast", "random"])
def test_selection_step_trains_on_real_plus_kept(mode):
    """Scoring leaves no trace: the step equals a plain step on real + kept (weights, BN statistics)."""
    a, b = resnet(), resnet()
    g = torch.Generator().manual_seed(2)
    rx, sx = torch.randn(8, 3, 32, 16, generator=g), torch.randn(6, 3, 32, 16, generator=g)
    ry, sy = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), torch.tensor([4, 4, 0, 1, 2, 3])
    opt_a, opt_b = torch.optim.SGD(a.parameters(), lr=0.1), torch.optim.SGD(b.parameters(), lr=0.1)
    x, y = torch.cat([rx, sx]), torch.cat([ry, sy])
    if mode == "exact":
        delta = delta_exact(b, x, y, 8, 0.1, reid)
    elif mode == "fast":
        split = encoder_split(b, "head")
        with torch.no_grad():
            z = split.prefix(x)  # moves b's running stats: restore them below
        b.load_state_dict(a.state_dict())
        delta = delta_fast(split, z, y, 8, 0.1, reid)
    else:
        delta = torch.rand(6, generator=torch.Generator().manual_seed(5))
    s = dss_step(b, opt_b, rx, ry, sx, sy, ratio=0.5, mode=mode, loss_fn=reid,
                 generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(s["delta"], delta)
    assert s["kept"] == 3 and s["keep"].tolist() == select(delta, 0.5).tolist()
    dss_step(a, opt_a, rx, ry, sx[s["keep"]], sy[s["keep"]], ratio=1.0, mode="off", loss_fn=reid)
    sa_, sb_ = state(a), state(b)
    for k in sa_:
        torch.testing.assert_close(sb_[k], sa_[k])
    with pytest.raises(ValueError, match="mode"):
        dss_step(b, opt_b, rx, ry, sx, sy, ratio=0.5, mode="slow", loss_fn=reid)
    with pytest.raises(ValueError, match="generator"):
        dss_step(b, opt_b, rx, ry, sx, sy, ratio=0.5, mode="random", loss_fn=reid)


def test_curriculum_goes_from_synthetic_to_real():
    assert synthetic_share(0.0) == pytest.approx(0.5) and synthetic_share(1.0) == pytest.approx(0.1)
    assert synthetic_share(0.5, start=0.6, end=0.2) == pytest.approx(0.4)
    assert synthetic_share(-1.0) == synthetic_share(0.0) and synthetic_share(2.0) == synthetic_share(1.0)
    shares = [synthetic_share(t / 10) for t in range(11)]
    assert all(a >= b for a, b in zip(shares, shares[1:]))


def test_selection_chooses_which_not_how_many():
    """share 0.1 of a 16 x 4 batch keeps round(16 * 0.1 / 0.9) = 2 identities' images; keeping half
    draws 4 identities (16 candidates) so 8 synthetic images are trained on, as without selection."""
    from rgsyn.config import MixParams, SelectionParams
    from rgsyn.downstream.trainer import candidate_ids, keep_ratio, n_synthetic_ids

    mix = MixParams("x", "", True, 0.1, False, 0.2, 0.02, 0.1)
    assert keep_ratio(None) == 1.0 and keep_ratio(SelectionParams("off", 0.5, "head", "real")) == 1.0
    assert n_synthetic_ids(0.0, mix, 16, 100) == 2
    assert n_synthetic_ids(0.0, mix, 16, 100, keep_ratio(SelectionParams("fast", 0.5, "head", "real"))) == 4
    assert n_synthetic_ids(0.0, mix, 16, 3, 0.5) == 3  # capped by the sampler's identities
    assert candidate_ids(2, 0.25) == 8 and candidate_ids(3, 0.5) == 6 and candidate_ids(2, 0.3) == 7
    for kept, ratio in [(2, 0.5), (3, 0.25), (2, 0.3), (5, 0.7)]:
        assert math.ceil(ratio * candidate_ids(kept, ratio) * 4 - 1e-9) >= kept * 4  # select's k keeps them all


def test_real_lookahead_by_hand_and_free_of_self_influence():
    # W = 0: the real row (x=[1,0], y=0) alone sets G_r = (p − e) xᵀ = [[−1/2, 0], [1/2, 0]], w' = −ηG_r.
    # a (x=[0,1], y=1): logits' = 0 -> Δl_a = 0; b (x=[1,0], y=1, looks like the real identity):
    # logits' = (η/2, −η/2) -> Δl_b = log(1 + e^η) − log 2; fast: −η ⟨∇l_b, G_r⟩ = η/2, 0 for a.
    model = Linear(torch.zeros(2, 2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    eta = 3.0
    exact = delta_exact(model, x, y, 1, eta, ce_loss, rows="real")
    torch.testing.assert_close(exact, torch.tensor([0.0, math.log(1 + math.exp(eta)) - math.log(2)]))
    fast = delta_fast(encoder_split(model, "all"), x, y, 1, eta, ce_loss, rows="real")
    torch.testing.assert_close(fast, torch.tensor([0.0, 1.5]))
    # mixed (eq 12 as printed) scores a below 0 by its own gradient alone: nothing real points its way
    assert delta_exact(model, x, y, 1, eta, ce_loss)[0] < 0
    # on the real rows a candidate's Δl does not depend on which other candidates share the batch
    g = torch.Generator().manual_seed(5)
    w = torch.randn(4, 6, generator=g)
    x, y, n = tiny_batch(5)
    x2 = torch.cat([x[:n + 2], torch.randn(4, 6, generator=g)])
    for rows, same in (("real", True), ("mixed", False)):
        d1 = delta_fast(encoder_split(Linear(w), "all"), x, y, n, 0.1, ce_loss, rows=rows)
        d2 = delta_fast(encoder_split(Linear(w), "all"), x2, y, n, 0.1, ce_loss, rows=rows)
        assert torch.allclose(d1[:2], d2[:2], atol=1e-7) == same
    with pytest.raises(ValueError, match="downstream.selection.lookahead"):
        delta_fast(encoder_split(Linear(w), "all"), x, y, n, 0.1, ce_loss, rows="both")
