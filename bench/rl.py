"""What RL costs on top of plain diffusion work, measured in one run on one model.

python bench/rl.py [--steps 20] [--batch 32] [--repeats 3]
- recording: sampling that keeps x_t and per-step log-probs vs plain sampling (same sampler, eta 1)
- update: one DPOK update on one trajectory step (policy forward+backward with LoRA, reference
  forward with adapters off, KL) vs one plain denoising training step of the same batch (full model)
Last line: `ratio: recording=<x> update=<y>`.
"""
import argparse
import time

import torch

from rgsyn.config import load_params
from rgsyn.generator.dit import DiTBundle, build_dit, make_scheduler, reset_class_embedding, tie_block_embeddings
from rgsyn.generator.sampler import Sampler
from rgsyn.generator.train import denoise_loss
from rgsyn.rl.loop import rl_update
from rgsyn.rl.policy import Policy


def best_of(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    p = load_params()
    m = p.prior.model
    torch.manual_seed(0)
    model = tie_block_embeddings(build_dit("small", 32, 6, 150, num_layers=m.num_layers,
                                           num_attention_heads=m.num_attention_heads,
                                           attention_head_dim=m.attention_head_dim, patch_size=m.patch_size))
    bundle = DiTBundle(model.eval(), make_scheduler(p.prior.prediction_type, p.prior.beta_schedule), None, 2)
    labels = torch.arange(a.batch) % 150
    sampler = Sampler(bundle, a.steps, eta=1.0)

    t_plain = best_of(lambda: sampler.sample(labels, torch.Generator().manual_seed(0)), a.repeats)
    t_rec = best_of(lambda: sampler.sample(labels, torch.Generator().manual_seed(0), record=True), a.repeats)

    # plain denoising step: the full model trains (as the prior does)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    x0 = torch.randn(a.batch, 6, 32, 32)
    g = torch.Generator().manual_seed(0)

    def plain_step():
        loss = denoise_loss(bundle, x0, labels, g, 0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    t_denoise = best_of(plain_step, a.repeats)

    # one DPOK update on one trajectory step
    reset_class_embedding(model, 150)
    rp = p.rl
    policy = Policy(model, rp.lora_rank, False, seed=0)
    ropt = torch.optim.AdamW(policy.params.values(), lr=rp.lr)
    traj = sampler.sample(labels, torch.Generator().manual_seed(1), record=True)
    one = type(traj)(traj.x0, traj.latents[:2], traj.log_probs[:1], traj.timesteps)
    adv = torch.randn(a.batch)
    t_update = best_of(lambda: rl_update(policy, sampler, one, labels, adv, rp, ropt, False), a.repeats)

    print("| what | seconds |\n| --- | --- |")
    print(f"| sample {a.batch} x {a.steps} steps | {t_plain:.3f} |\n| same, recording x_t + log-probs | {t_rec:.3f} |")
    print(f"| plain denoising step (batch {a.batch}) | {t_denoise:.3f} |\n| DPOK update, one trajectory step | {t_update:.3f} |")
    print(f"ratio: recording={t_rec / t_plain:.3f} update={t_update / t_denoise:.3f}")


if __name__ == "__main__":
    main()
