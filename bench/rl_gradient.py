"""How much of one RL step's gradient is signal, per estimator and per sampler step, and does it point
where identity consistency points? Measured at the cold-start policy of the default run with the
shipping sampler and the `rl` section's step shape (`rl.ids_per_step` identities × `rl.group_size`
samples, one x_T per group) over `--batches` independent rollouts.

For each rollout b and reward k, g_k(b) is the gradient of one step's loss with respect to the LoRA
parameters (the parameters every identity shares; the label table is left out, its rows differ from
rollout to rollout):
- `dpok`: the on-policy policy gradient of the clipped surrogate (ratio 1: −Σ_t A ∇ log p_t / S) with
  group-relative advantages of reward k; per step t its own term. Steps below `rl.min_sigma` are left
  out of the sum, as the `rl` stage does (`--set rl.min_sigma=0` keeps them).
- `draft`: the pathwise gradient of the batch's mean reward, backpropagated through the last k
  sampler steps (`rl.draft_k`; the per-step rows: k = 1 .. S) into the same parameters.

- signal share: with g = s + n (s the expected gradient, E‖n‖² = σ²/B), the mean dot product of two
  independent rollouts' gradients estimates ‖s‖², the mean squared norm ‖s‖² + σ²/B; their ratio is
  the share of one rollout's gradient that is signal (jackknife s.e. over rollouts).
- alignment: the cosine between the rollout-averaged gradients of two rewards, and the mean per-rollout
  cosine of the same pair (same samples).

Rewards: `sem` (R_sem, the reference encoder), `full` (eq. 11; for draft with eq. 10's statistics
constant and averaged over the encoder's train-time views, as the stage trains it) and `audit_sem`
(R_sem read by the audit's independent encoder against its own real prototypes: the direction identity
consistency points; measured, never trained on).

`--x-t-defect` reproduces the sampler defect the rollouts once had (a group's x_T equal to its first
member's first-step noise), for the before/after table of docs/rl.md.

python bench/rl_gradient.py [--estimator dpok|draft] [--by-step] [--batches 12] [--x-t-defect]
    [--params params.yaml] [--set sampler.spacing=leading rl.min_sigma=0 ...]
"""
import argparse

import numpy as np
import torch

from rgsyn import rewards as R
from rgsyn.config import load_params, parse_overrides
from rgsyn.encoder import differentiable_features, extract_features
from rgsyn.generator.dit import to_images
from rgsyn.generator.sampler import Sampler
from rgsyn.generator.viz import to_uint8
from rgsyn.rl.advantages import group_advantages
from rgsyn.rl.core import draw_rollout, group_starts, load_reward_setup
from rgsyn.rl.dpok import trained_steps
from rgsyn.rl.draft import rollout_with_grad, view_parts, view_reward
from rgsyn.rl.loss import policy_loss
from rgsyn.rl.policy import Policy

REWARDS = ("sem", "full", "audit_sem")


def signal_share(g: torch.Tensor) -> tuple[float, float]:
    """Rollout gradients (n, P) -> (‖s‖² / E‖g‖², its leave-one-rollout-out jackknife s.e.). ‖s‖² is
    estimated without bias by the mean dot product of two different rollouts' gradients."""
    def share(rows):
        d = g[rows] @ g[rows].t()
        m = len(rows)
        return float((d.sum() - d.diagonal().sum()) / (m * (m - 1)) / d.diagonal().mean())
    n = g.shape[0]
    full = share(list(range(n)))
    jack = np.array([share([i for i in range(n) if i != j]) for j in range(n)])
    return full, float(np.sqrt((n - 1) / n * ((jack - jack.mean()) ** 2).sum()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--estimator", default="dpok", choices=("dpok", "draft"))
    ap.add_argument("--by-step", action="store_true", help="dpok: each step's term; draft: k = 1 .. S")
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--x-t-defect", action="store_true", help="x_T of a group = its first member's first noise")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", nargs="*", default=[], help="key=value params overrides, e.g. sampler.spacing=leading")
    a = ap.parse_args()
    p = load_params(a.params, parse_overrides(a.set))
    rp, tr = p.rl, p.reference.train
    setup = load_reward_setup(p)
    bundle, judge = setup.bundle, setup.judge
    sampler = Sampler.from_params(bundle, p.sampler)
    policy = Policy(bundle.transformer, rp.lora_rank, rp.full_finetune, rp.seed, rp.lora_targets)
    shared = [v for k, v in policy.params.items() if "lora_" in k]
    n_steps = len(sampler.timesteps)
    if a.estimator == "dpok":
        kept = trained_steps(sampler, rp.min_sigma)
        parts = {f"t={int(sampler.timesteps[j])}": [j] for j in kept} if a.by_step else {}
        parts[f"sum over {len(kept)} steps"] = kept
    else:
        parts = {f"k={k}": k for k in range(1, n_steps + 1)} if a.by_step else {}
        parts.setdefault(f"k={rp.draft_k or n_steps}", rp.draft_k or n_steps)

    def flat(loss) -> torch.Tensor:
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, shared, retain_graph=True)])

    def uint8_rewards(images, labels) -> dict:  # uint8 -> {name: (B,) float64}, for the advantages
        sc = R.score_groups(extract_features(setup.encoder, images), labels, setup.bank, rp.sigma, rp.alpha, rp.eps,
                            rp.tau, setup.s_pool)
        audit = judge.features(images).double()
        return {"sem": sc["r_sem"], "full": R.combine_rewards(sc["r_sem"], sc["r_cov"], sc["r_exp"], tuple(rp.weights)),
                "audit_sem": (audit * judge.protos.double()[labels]).sum(1)}

    def dpok_grads(labels, seeds, start) -> dict:
        x, noise = sampler.start(labels, seeds, start_seeds=start)
        eps = [noise() for _ in range(n_steps)]
        if a.x_t_defect:
            lead = torch.arange(len(labels)) % rp.group_size == 0
            x = torch.where(lead.view(-1, 1, 1, 1), eps[0], x)[torch.as_tensor(
                [i - i % rp.group_size for i in range(len(labels))])]
        lats = [x]
        with torch.no_grad():
            for j, t in enumerate(sampler.timesteps):
                lats.append(sampler.step(lats[-1], t, labels, noise=eps[j]).prev)
        r = uint8_rewards(to_uint8(to_images(bundle, lats[-1])), labels)
        adv = {k: torch.as_tensor(group_advantages(labels.numpy(), v.numpy()), dtype=torch.float32) for k, v in r.items()}
        out = {}
        for j in sorted({j for js in parts.values() for j in js}):
            new = sampler.step(lats[j], sampler.timesteps[j], labels, prev=lats[j + 1])
            for k in REWARDS:  # the on-policy surrogate's gradient of this step, one reward at a time
                out[(j, k)] = flat(policy_loss(new.log_prob, new.log_prob.detach(), adv[k], rp.clip_range)[0])
        return {(name, k): sum(out[(j, k)] for j in js) / len(js) for name, js in parts.items() for k in REWARDS}

    def draft_grads(labels, seeds, start) -> dict:
        out = {}
        for name, k in parts.items():
            x0 = rollout_with_grad(policy, sampler, labels, seeds, start, k, rp.draft_uncond_grad, anchor=False)[0]
            images = to_images(bundle, x0)
            views = view_parts(images, labels, setup, rp, tr.flip, tr.pad)
            full = view_reward(views, rp.weights).mean()
            sem = torch.stack([v["r_sem"] for v in views]).mean()
            audit = differentiable_features(judge.encoder, images)[0].double()
            audit_sem = (audit * judge.protos.double()[labels]).sum(1).mean()
            out.update({(name, "sem"): flat(sem), (name, "full"): flat(full), (name, "audit_sem"): flat(audit_sem)})
        return out

    rng = np.random.default_rng(rp.seed)
    grads = {}
    for b in range(a.batches):
        ids, seeds = draw_rollout(rng, len(setup.pids), rp)
        labels = torch.as_tensor(ids).repeat_interleave(rp.group_size)
        got = (dpok_grads if a.estimator == "dpok" else draft_grads)(labels, seeds, group_starts(seeds, rp.group_size))
        for key, g in got.items():
            grads.setdefault(key, []).append(g.double())
        print(f"rollout {b + 1}/{a.batches}", flush=True)

    cos = torch.nn.functional.cosine_similarity
    print(f"\n{a.estimator}, {a.batches} rollouts of {rp.ids_per_step} identities x {rp.group_size} samples "
          f"(B = {len(labels)}); spacing {p.sampler.spacing}, stds {[round(s, 4) for s in sampler.stds.tolist()]}"
          f"{', x_T defect' if a.x_t_defect else ''}; {sum(v.numel() for v in shared)} shared LoRA parameters\n")
    print("| part | reward | mean gradient norm | signal share of one rollout's gradient ± jackknife s.e. |")
    print("| --- | --- | --- | --- |")
    for name in parts:
        for k in REWARDS:
            g = torch.stack(grads[(name, k)])
            share, se = signal_share(g)
            print(f"| {name} | {k} | {float(g.norm(dim=1).mean()):.4g} | {share:+.4f} ± {se:.4f} |")
    print("\n| part | pair | cosine of the averaged gradients | mean per-rollout cosine |\n| --- | --- | --- | --- |")
    for name in parts:
        for x, y in (("sem", "audit_sem"), ("full", "audit_sem")):
            gx, gy = torch.stack(grads[(name, x)]), torch.stack(grads[(name, y)])
            per = np.mean([float(cos(u, v, dim=0)) for u, v in zip(gx, gy)])
            print(f"| {name} | {x} vs {y} | {float(cos(gx.mean(0), gy.mean(0), dim=0)):+.4f} | {per:+.4f} |")


if __name__ == "__main__":
    main()
