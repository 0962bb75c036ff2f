"""How much of one DPOK step's policy gradient is signal, and does it point where identity
consistency points? Measured at the cold-start policy of the default run, with the shipping sampler
and the `rl` section's step shape (`rl.ids_per_step` identities × `rl.group_size` samples, one x_T per
group, group-relative advantages), over `--batches` independent rollouts.

For each rollout b and reward k, g_k(b) is the on-policy gradient of the clipped surrogate (the
importance ratio is 1, so it is −Σ_t A ∇ log p) with respect to the LoRA parameters, the parameters
every identity shares (the label table is left out: its rows differ from rollout to rollout).

- signal share: with g = s + n (s the expected gradient, E‖n‖² = σ²/B for B samples), the mean dot
  product of two independent rollouts' gradients estimates ‖s‖², the mean squared norm ‖s‖² + σ²/B;
  their ratio c is the share of one rollout's gradient that is signal, and B · (1 − c) / c is the
  batch at which signal and noise would be equal (printed for c two jackknife s.e. above its estimate:
  the least batch the measurement allows).
- alignment: the cosine between the rollout-averaged gradients of two rewards, and the mean per-rollout
  cosine of the same pair (same samples, two advantages).

Rewards: `sem` (R_sem, the reference encoder), `full` (eq. 11), `brightness` (the mean pixel, the
trivially learnable one of bench/rl_sanity.py) and `audit_sem` (R_sem read by the audit's independent
encoder against its own real prototypes: the direction identity consistency points; measured, never
trained on).

python bench/rl_gradient.py [--batches 10] [--params params.yaml] [--set rl.ids_per_step=64 ...]
"""
import argparse
import numpy as np
import torch

from rgsyn import rewards as R
from rgsyn.config import load_params, parse_overrides
from rgsyn.encoder import extract_features
from rgsyn.generator.dit import to_images
from rgsyn.generator.sampler import Sampler
from rgsyn.generator.viz import to_uint8
from rgsyn.rl.advantages import group_advantages
from rgsyn.rl.loss import policy_loss
from rgsyn.rl.loop import load_reward_setup
from rgsyn.rl.policy import Policy

REWARDS = ("sem", "full", "audit_sem", "brightness")


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
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", nargs="*", default=[], help="key=value params overrides, e.g. rl.ids_per_step=64")
    a = ap.parse_args()
    p = load_params(a.params, parse_overrides(a.set))
    rp, sp = p.rl, p.sampler
    bundle, pids, enc, bank, s_pool, judge = load_reward_setup(p)
    sampler = Sampler(bundle, sp.steps, eta=sp.eta, guidance=sp.guidance)
    policy = Policy(bundle.transformer, rp.lora_rank, rp.full_finetune, rp.seed, rp.lora_targets)
    shared = [v for k, v in policy.params.items() if "lora_" in k]

    def rewards(images, labels):  # -> {name: (B,) float64}
        parts = R.score_groups(extract_features(enc, images), labels, bank, rp.sigma, rp.alpha, rp.eps, rp.tau,
                               s_pool)
        audit = extract_features(judge.encoder, images, device=judge.device).double()
        return {"sem": parts["r_sem"],
                "full": R.combine_rewards(parts["r_sem"], parts["r_cov"], parts["r_exp"], tuple(rp.weights)),
                "audit_sem": (audit * judge.protos.double()[labels]).sum(1),
                "brightness": images.double().mean((1, 2, 3))}

    def gradient(traj, labels, adv) -> torch.Tensor:  # the first optimiser step's policy gradient, flattened
        for j in range(traj.log_probs.shape[0]):
            new = sampler.step(traj.latents[j], sampler.timesteps[j], labels, prev=traj.latents[j + 1])
            loss, _ = policy_loss(new.log_prob.float(), traj.log_probs[j].float(), adv, rp.clip_range)
            (loss / traj.log_probs.shape[0]).backward()
        g = torch.cat([v.grad.flatten() for v in shared])
        for v in policy.params.values():
            v.grad = None
        return g

    rng = np.random.default_rng(rp.seed)
    grads = {k: [] for k in REWARDS}
    for b in range(a.batches):
        ids = rng.choice(len(pids), rp.ids_per_step, replace=False)
        labels = torch.as_tensor(ids).repeat_interleave(rp.group_size)
        seeds = rng.integers(0, 2 ** 62, len(labels)).tolist()
        start = [seeds[i - i % rp.group_size] for i in range(len(seeds))]
        with torch.no_grad():
            traj = sampler.sample(labels, seeds, record=True, start_seeds=start)
        r = rewards(to_uint8(to_images(bundle, traj.x0)), labels)
        for k in REWARDS:
            adv = torch.as_tensor(group_advantages(labels.numpy(), r[k].numpy()), dtype=torch.float32)
            grads[k].append(gradient(traj, labels, adv))
        print(f"rollout {b + 1}/{a.batches}", flush=True)

    n = len(labels)
    cos = torch.nn.functional.cosine_similarity
    print(f"\n{a.batches} rollouts of {rp.ids_per_step} identities x {rp.group_size} samples (B = {n}); "
          f"{sum(v.numel() for v in shared)} shared LoRA parameters\n")
    print("| reward | signal share of one rollout's gradient | jackknife s.e. | batch for signal = noise, at least |")
    print("| --- | --- | --- | --- |")
    for k in REWARDS:
        frac, se = signal_share(torch.stack(grads[k]).double())
        high = frac + 2 * se  # the share's upper end: the smallest batch that could balance the noise
        need = f"{n * (1 - high) / high:.0f}" if high > 0 else "no signal measured"
        print(f"| {k} | {frac:+.4f} | {se:.4f} | {need} |")
    print("\n| pair | cosine of the averaged gradients | mean per-rollout cosine |")
    print("| --- | --- | --- |")
    for x, y in (("sem", "audit_sem"), ("full", "audit_sem"), ("sem", "full"), ("sem", "brightness")):
        avg = float(cos(torch.stack(grads[x]).mean(0), torch.stack(grads[y]).mean(0), dim=0))
        per = np.mean([float(cos(u, v, dim=0)) for u, v in zip(grads[x], grads[y])])
        print(f"| {x} vs {y} | {avg:+.4f} | {per:+.4f} |")


if __name__ == "__main__":
    main()
