"""DPOK (Fan et al. 2023, "DPOK: Reinforcement Learning for Fine-tuning Text-to-Image Diffusion Models",
arXiv:2305.16381): the score-function policy gradient over the sampler's stochastic transitions, with a
clipped importance ratio and a KL term to the cold-start policy — the paper's method.

One step: roll out `rl.group_size` samples of each of `rl.ids_per_step` identities with the shipping
sampler, recording x_t and per-step log-probs. A group starts from one shared x_T, so its samples
differ only by the transitions the policy gradient scores. Score the final images with eq. 11;
standardise each sample's reward within its identity's group (rgsyn.rl.advantages); then
`rl.inner_epochs` passes over the recorded transitions, each split into `rl.minibatches` groups of
trajectories, one optimiser step per group on the clipped policy gradient + KL. After the first
optimiser step the ratio departs from 1 and the clip acts.

Transitions whose std is below `rl.min_sigma` are left out of the loss and the KL: ∇ log p scales as
1 / σ, so one near-deterministic step (σ = 0.0064 at t = 200 → 0 of 5 leading steps) would be nearly
the whole update while moving pixels by less than a grey level (docs/rl.md, the per-step table).
"""
from __future__ import annotations

import torch

from rgsyn import distributed as dist
from rgsyn import rewards as R
from rgsyn.config import RLParams
from rgsyn.generator.dit import to_images
from rgsyn.generator.sampler import Sampler, Trajectory
from rgsyn.generator.viz import to_uint8
from rgsyn.rl.advantages import group_advantages
from rgsyn.rl.core import RewardSetup, reward_parts
from rgsyn.rl.loss import dpok_loss
from rgsyn.rl.policy import Policy


def trained_steps(sampler: Sampler, min_sigma: float) -> list[int]:
    """Indices of the grid steps DPOK trains: stochastic, with std ≥ min_sigma."""
    return [j for j, s in enumerate(sampler.stds.tolist()) if s > 0 and s >= min_sigma]


def dpok_update(policy: Policy, sampler: Sampler, traj: Trajectory, labels: torch.Tensor, adv: torch.Tensor,
                rp: RLParams, opt: torch.optim.Optimizer, g: torch.Generator, check_ratio: bool) -> dict:
    """`rp.inner_epochs` passes over the rollout's trained transitions; each pass shuffles the
    trajectories into `rp.minibatches` groups and takes one optimiser step per group (gradients
    accumulated over that group's transitions). -> means of the loss statistics + ratio range.

    Several processes (rgsyn.distributed) each hold their slice of the global rollout: the shuffle is
    the global one (same generator everywhere), each process scores its members of a group with the
    loss weighted by their share of the group, and the gradients are summed across processes: the
    update is the one process would take on the whole rollout."""
    steps = trained_steps(sampler, rp.min_sigma)
    if not steps:
        raise ValueError(f"params.yaml: rl.min_sigma = {rp.min_sigma} leaves no sampler step to train "
                         f"(transition stds {[round(s, 4) for s in sampler.stds.tolist()]}); lower it")
    b = traj.log_probs.shape[1]
    rank, size = dist.world()
    lo, params = rank * b, list(policy.params.values())
    ratios, sums, count = [], {}, 0
    for epoch in range(rp.inner_epochs):
        for k, group in enumerate(torch.randperm(b * size, generator=g).chunk(rp.minibatches)):
            mb = (group[(group >= lo) & (group < lo + b)] - lo).to(labels.device)
            share = len(mb) / len(group)
            for j in (steps if len(mb) else []):
                t, xt, prev = sampler.timesteps[j].to(labels.device), traj.latents[j][mb], traj.latents[j + 1][mb]
                new = sampler.step(xt, t, labels[mb], prev=prev)
                with policy.reference() as ref_model:
                    ref = sampler.step(xt, t, labels[mb], prev=prev, model=ref_model)
                old = traj.log_probs[j][mb]
                if check_ratio and epoch == 0 and k == 0 and j == steps[0]:
                    gap = (new.log_prob - old).abs().max().item()
                    if gap > 1e-4:
                        raise RuntimeError(f"importance ratio is not 1 before the first update (|Δ log p| = "
                                           f"{gap:.2e}): rollout and update disagree (dropout, train-mode layers "
                                           "or dtype)")
                loss, st = dpok_loss(new.log_prob.float(), old.float(), adv[mb], new.mean.float(), ref.mean.float(),
                                     new.std.float(), rp.clip_range, rp.kl_weight)
                (loss * share / len(steps)).backward()
                ratios.append(torch.exp(new.log_prob.detach().float() - old.float()))
                for key, v in st.items():
                    sums[key] = sums.get(key, 0.0) + v
                count += 1
            dist.sync_grads(params, op="sum")
            gn = torch.nn.utils.clip_grad_norm_(params, rp.max_grad_norm)
            sums["grad_norm"] = sums.get("grad_norm", 0.0) + float(gn) * len(steps)
            opt.step()
            opt.zero_grad(set_to_none=True)
    r = torch.cat(ratios) if ratios else torch.ones(1)
    out = {k: v / max(count, 1) for k, v in sums.items() if not k.startswith("ratio_")}
    out.update(ratio_min=r.min().item(), ratio_max=r.max().item(), ratio_mean=r.mean().item(),
               optimizer_steps=rp.inner_epochs * min(rp.minibatches, b * size))
    return out


def dpok_step(policy: Policy, sampler: Sampler, setup: RewardSetup, rp: RLParams, opt, g: torch.Generator,
              labels: torch.Tensor, seeds: list[int], start: list[int], rows: slice,
              first: bool) -> tuple[dict, dict, torch.Tensor]:
    """One DPOK iteration on this process's rows `rows` of the global batch (labels (B,), their seeds and
    x_T seeds). -> (update statistics, the global batch's reward parts {name: (B_global,)} + "combined",
    this process's uint8 images)."""
    traj = sampler.sample(labels, seeds, record=True, start_seeds=start)
    images = to_uint8(to_images(setup.bundle, traj.x0)).cpu()
    parts = reward_parts(images, labels.cpu(), setup, rp)
    every = {k: dist.gather_values(v) for k, v in parts.items()}  # eq. 10 standardises the global batch
    r_all = R.combine_rewards(every["r_sem"], every["r_cov"], every["r_exp"], tuple(rp.weights))
    adv = torch.as_tensor(group_advantages(labels.cpu().numpy(), r_all[rows].numpy()), dtype=torch.float32,
                          device=labels.device)
    st = dpok_update(policy, sampler, traj, labels, adv, rp, opt, g, check_ratio=first)
    return st, {**every, "combined": r_all}, images

