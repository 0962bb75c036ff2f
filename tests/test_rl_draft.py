"""DRaFT's pieces on a tiny model: the pathwise gradient against finite differences, the view-averaged
reward, and best-of-n selection."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from rgsyn import rewards as R
from rgsyn.config import load_params
from rgsyn.encoder import EncoderConfig, IdentityEncoder, differentiable_features
from rgsyn.generator.dit import DiTBundle, build_dit, label_tables, make_scheduler, reset_class_embedding, to_images
from rgsyn.generator.sampler import Sampler
from rgsyn.rl.core import RewardSetup
from rgsyn.rl.draft import rollout_with_grad, view_parts, view_reward
from rgsyn.rl.policy import Policy
from tests.conftest import ROOT

C = 3  # identities


def tiny_setup():
    torch.manual_seed(0)
    model = reset_class_embedding(build_dit("tiny", 8, 6, num_classes=C), C)
    with torch.no_grad():
        label_tables(model)[0].embedding_table.weight.normal_(std=0.5)
        model.proj_out_2.weight.mul_(0.3)  # x0-predictions well inside [-1, 1]: few clamped pixels
    bundle = DiTBundle(model.eval(), make_scheduler("sample", "squaredcos_cap_v2"), None, 2)  # images (3, 16, 8)
    enc = IdentityEncoder(EncoderConfig("test_resnet", C, 16, 16, 8)).eval().requires_grad_(False)
    bank = [F.normalize(torch.randn(3, 16, dtype=torch.float64), dim=1) for _ in range(C)]
    setup = RewardSetup(bundle, list(range(C)), enc, bank, R.pooled_spread(bank), None, None)
    rp = dataclasses.replace(load_params(ROOT / "params.yaml").rl, draft_k=0, anchor_weight=0.5)
    policy = Policy(model, 2, False, 0, ["to_q", "to_k", "to_v", "to_out.0"])
    with torch.no_grad():  # a policy away from the cold start: the anchor has a gradient
        for k, v in policy.params.items():
            if "lora_B" in k:
                v.normal_(std=0.05)
    return setup, rp, policy, Sampler(bundle, 3, eta=1.0, guidance=2.0, spacing="trailing")


def test_draft_gradient_equals_finite_differences():
    """The gradient DRaFT backpropagates (reward over the views with eq. 10's statistics held fixed, plus
    the anchor to the cold start's constant targets) is the derivative of that objective: a central
    difference along a random direction of every trainable tensor agrees; checkpointing the steps
    gives the same gradient."""
    setup, rp, policy, sampler = tiny_setup()
    labels, seeds = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), list(range(8))
    start = [0] * 4 + [4] * 4

    def objective(fixed=None, checkpointing=False):
        x0, anchor, _, targets = rollout_with_grad(policy, sampler, labels, seeds, start, rp.draft_k, True,
                                                   checkpointing=checkpointing, targets=fixed and fixed[1])
        views = view_parts(to_images(setup.bundle, x0), labels, setup, rp, flip=True, pad=1)
        stats = fixed[0] if fixed else [R.batch_stats(p) for p in views]
        return -view_reward(views, rp.weights, stats).mean() + rp.anchor_weight * anchor, (stats, targets)

    params = list(policy.params.values())
    loss, fixed = objective()
    grads = torch.autograd.grad(loss, params)
    for a, b in zip(grads, torch.autograd.grad(objective(checkpointing=True)[0], params)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    g = torch.Generator().manual_seed(1)
    direction = [torch.randn(p.shape, generator=g) for p in params]
    analytic = sum(float((gr * d).sum()) for gr, d in zip(grads, direction))
    eps = 1e-3
    with torch.no_grad():
        values = []
        for sign in (1, -1):
            for p, d in zip(params, direction):
                p.add_(sign * eps * d)
            values.append(float(objective(fixed)[0]))
            for p, d in zip(params, direction):
                p.sub_(sign * eps * d)
    numeric = (values[0] - values[1]) / (2 * eps)
    assert abs(analytic) > 1e-3
    assert numeric == pytest.approx(analytic, rel=0.03)


def test_view_reward_is_the_mean_over_the_views():
    setup, rp, _, _ = tiny_setup()
    torch.manual_seed(3)
    images = torch.rand(8, 3, 16, 8) * 2 - 1
    labels = torch.tensor([0, 0, 0, 0, 2, 2, 2, 2])
    views = view_parts(images, labels, setup, rp, flip=True, pad=2)
    assert len(views) == 4  # itself, mirror, two pad-crops
    each = []
    flipped = images.flip(-1)
    for v, x in enumerate([images, flipped]):  # the first two views, recomputed by hand
        f = differentiable_features(setup.encoder, x)[0]
        p = R.score_groups(f, labels, setup.bank, rp.sigma, rp.alpha, rp.eps, rp.tau, setup.s_pool)
        torch.testing.assert_close(p["r_sem"], views[v]["r_sem"])
    for p in views:
        each.append(R.combine_rewards(p["r_sem"], p["r_cov"], p["r_exp"], tuple(rp.weights)))
    torch.testing.assert_close(view_reward(views, rp.weights), torch.stack(each).mean(0))
    # eq. 10's statistics as constants: the value is eq. 11's, the gradient of a fixed affine map
    r = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    fixed = R.standardize(r, stats=R.batch_stats({"r": r})["r"])
    torch.testing.assert_close(fixed, R.standardize(r))
    fixed.sum().backward()
    torch.testing.assert_close(r.grad, torch.full((3,), 1 / (float(r.detach().std(correction=0)) + 1e-8)))


def test_differentiable_features_match_the_uint8_path():
    """Without rounding, the float path reads an image as extract_features reads its uint8 version."""
    from rgsyn.encoder import extract_features
    from rgsyn.generator.viz import to_uint8

    setup, _, _, _ = tiny_setup()
    torch.manual_seed(4)
    u8 = torch.randint(0, 256, (4, 3, 16, 8), dtype=torch.uint8)
    as_float = u8.float() / 127.5 - 1  # exactly representable: to_uint8 gives u8 back
    assert torch.equal(to_uint8(as_float), u8)
    torch.testing.assert_close(differentiable_features(setup.encoder, as_float)[0],
                               extract_features(setup.encoder, u8), atol=1e-5, rtol=1e-4)


def test_best_of_n_keeps_each_samples_highest_reward_candidate():
    from rgsyn.synth.engine import best_of, candidate_seed

    setup, rp, _, _ = tiny_setup()
    torch.manual_seed(5)
    n, labels = 3, torch.tensor([0, 0, 0, 1, 1, 1]).repeat_interleave(3)  # 6 samples x 3 candidates
    feats = F.normalize(torch.randn(len(labels), 16), dim=1)
    keep = best_of(feats, labels, n, setup.bank, rp, setup.s_pool)
    parts = R.score_groups(feats, labels, setup.bank, rp.sigma, rp.alpha, rp.eps, rp.tau, setup.s_pool)
    reward = R.combine_rewards(parts["r_sem"], parts["r_cov"], parts["r_exp"], tuple(rp.weights))
    assert keep.tolist() == [int(reward[i * n:(i + 1) * n].argmax()) + i * n for i in range(6)]
    assert candidate_seed(123, 0) == 123 and len({candidate_seed(123, j) for j in range(5)}) == 5
