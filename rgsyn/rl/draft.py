"""DRaFT (Clark et al., "Directly Fine-Tuning Diffusion Models on Differentiable Rewards", ICLR 2024,
arXiv:2309.17400; AlignProp, arXiv:2310.03739, is the same idea): the pathwise gradient of the reward.
The reward is differentiable in the image — eq. 11's R_sem, R_cov and R_exp are smooth functions of
the reference encoder's features — so instead of DPOK's score-function estimate the gradient of the
batch's mean reward flows back through the decoder and the sampler's last `rl.draft_k` steps into the
LoRA adapters and the label table. The sampler's noise is fixed per sample (reparameterisation), so a
step of the policy is a differentiable map of x_t.

Follows the shipping sampler (`Sampler.start` / `Sampler.step`: same grid, η, guidance, noise streams)
and changes what a rollout keeps: the steps before the last `draft_k` run without gradient, the last
ones with it, and each of those also runs the cold-start policy on the same x_t for the anchor.

Guards against reward hacking, as that literature does:
- the reward is averaged over the reference encoder's train-time views (flip, pad + crop;
  rgsyn.data.images.train_views), so no single view of an image can be gamed;
- no uint8 rounding on this path, gradient-norm clipping (`rl.max_grad_norm`);
- an anchor: `rl.anchor_weight` × the mean squared distance of the policy's x0-prediction to the cold
  start's at the same x_t, a constant target (the KL to the cold-start transition up to its 1/σ²
  weighting, and defined at the deterministic last step too);
- early stopping on R_sem read by a second encoder on held-out noise (rgsyn.rl.loop).

eq. 10's batch statistics are constants for autograd (rewards.combine_rewards), computed over the
global batch when several processes share it.
"""
from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from rgsyn import distributed as dist
from rgsyn import rewards as R
from rgsyn.config import RLParams
from rgsyn.data.images import train_views
from rgsyn.encoder import differentiable_features
from rgsyn.generator.dit import to_images
from rgsyn.generator.sampler import Sampler
from rgsyn.generator.viz import to_uint8
from rgsyn.rl.core import RewardSetup
from rgsyn.rl.loss import gaussian_kl
from rgsyn.rl.policy import Policy


def rollout_with_grad(policy: Policy, sampler: Sampler, labels: torch.Tensor, seeds, start, k: int,
                      uncond_grad: bool, anchor: bool = True, checkpointing: bool = False, targets=None):
    """Sample `labels` with gradients through the last `k` grid steps (0 = all). -> (x0 in model space,
    the anchor, the mean per-dimension KL to the cold-start transition over the stochastic steps (for
    logs), the anchor's targets).

    The anchor is the mean squared distance of the policy's x0-prediction at each step with gradient to
    the cold start's at the same x_t, which is a constant target (computed without autograd, like the
    reference in DPOK's KL); `targets` gives them instead (the finite-difference test holds them fixed).
    Without `anchor` it is 0 and the cold start never runs.

    `checkpointing` (compute.grad_checkpointing): each step with gradient is checkpointed as a whole
    (torch.utils.checkpoint), so the graph keeps x_t per step and recomputes one step's activations at a
    time in the backward — memory that does not grow with the steps (about 1 GB per step of 64 guided
    samples on the CPU default otherwise), for about one more forward per step."""
    x, noise = sampler.start(labels, seeds, start_seeds=start)
    n = len(sampler.timesteps)
    first = n - k if 0 < k < n else 0
    zero = torch.zeros((), device=x.device)

    def step(x, t, eps, target):  # -> (x_{t-1}, anchor term)
        out = sampler.step(x, t, labels, noise=eps, uncond_grad=uncond_grad)
        return out.prev, ((out.x0 - target).pow(2).mean() if target is not None else zero), out

    anchors, kls, used = [], [], []
    for j, t in enumerate(sampler.timesteps.to(labels.device)):
        eps = noise() if sampler.eta > 0 else None  # drawn at every step: the streams stay aligned
        if j < first:
            with torch.no_grad():
                x = sampler.step(x, t, labels, noise=eps).prev
            continue
        ref = None
        if anchor:
            with policy.reference() as ref_model:
                ref = sampler.step(x.detach(), t, labels, noise=eps, model=ref_model)
        target = targets[len(used)] if targets is not None else (ref.x0 if ref is not None else None)
        used.append(target)
        if checkpointing:
            x, a = checkpoint(lambda *v: step(*v)[:2], x, t, eps, target, use_reentrant=False)
        else:
            x, a, out = step(x, t, eps, target)
            if ref is not None and bool((out.std > 0).all()):
                kls.append(gaussian_kl(out.mean.detach(), ref.mean, out.std).mean())
        anchors.append(a)
    return x, torch.stack(anchors).mean(), (torch.stack(kls).mean() if kls else zero), used


def view_parts(images: torch.Tensor, labels: torch.Tensor, setup: RewardSetup, rp: RLParams,
               flip: bool, pad: int) -> list[dict[str, torch.Tensor]]:
    """Float images in [−1, 1] (B, 3, H, W) -> per view, the per-sample reward components {name: (B,)}
    of the reference encoder's features, differentiable in the images."""
    feats = differentiable_features(setup.encoder, images, lambda x: train_views(x, flip, pad))
    return [R.score_groups(f, labels, setup.bank, rp.sigma, rp.alpha, rp.eps, rp.tau, setup.s_pool) for f in feats]


def view_reward(views: list[dict[str, torch.Tensor]], weights, stats: list[dict] | None = None) -> torch.Tensor:
    """Eq. 11 per sample averaged over the views -> (B,); `stats[v]`: view v's eq. 10 statistics as
    constants (default: each view's own batch, detached)."""
    out = [R.combine_rewards(p["r_sem"], p["r_cov"], p["r_exp"], tuple(weights),
                             stats=stats[v] if stats else R.batch_stats(p)) for v, p in enumerate(views)]
    return torch.stack(out).mean(0)


def draft_step(policy: Policy, sampler: Sampler, setup: RewardSetup, rp: RLParams, opt, labels: torch.Tensor,
               seeds: list[int], start: list[int], flip: bool, pad: int,
               checkpointing: bool = False) -> tuple[dict, dict, torch.Tensor]:
    """One DRaFT update on this process's rows. -> (update statistics, the global batch's reward parts
    {name: (B_global,)} of the plain view + "combined", this process's uint8 images)."""
    x0, anchor, kl, _ = rollout_with_grad(policy, sampler, labels, seeds, start, rp.draft_k, rp.draft_uncond_grad,
                                          anchor=rp.anchor_weight > 0, checkpointing=checkpointing)
    images = to_images(setup.bundle, x0)
    views = view_parts(images, labels, setup, rp, flip, pad)
    # eq. 10 over the global batch, per view, as constants
    every = [{k: dist.gather_values(v.detach()) for k, v in p.items()} for p in views]
    reward = view_reward(views, rp.weights, [R.batch_stats(p) for p in every])
    size = dist.world()[1]
    loss = (-reward.mean() + rp.anchor_weight * anchor) / size  # summed over processes: the global mean
    loss.backward()
    params = list(policy.params.values())
    dist.sync_grads(params, op="sum")
    gn = torch.nn.utils.clip_grad_norm_(params, rp.max_grad_norm)
    opt.step()
    opt.zero_grad(set_to_none=True)
    plain = every[0]
    combined = R.combine_rewards(plain["r_sem"], plain["r_cov"], plain["r_exp"], tuple(rp.weights))
    st = {"reward_views": float(dist.gather_values(reward.detach()).mean()), "anchor": float(anchor.detach()),
          "kl": float(kl), "grad_norm": float(gn), "loss": float(loss.detach()) * size}
    return st, {**plain, "combined": combined}, to_uint8(images.detach()).cpu()
