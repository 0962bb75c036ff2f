"""Does DPOK (rgsyn.rl.loop.dpok_update) move the generator at all, and how fast? The cold-start
generator of the default run is fine-tuned on a fixed set of identities with the shipping sampler,
for a reward that is either trivially learnable (`brightness`: the mean pixel of the image) or the
method's own (`sem`: R_sem; `full`: eq. 11), and the same reward is measured on held-out noise before
and after (brightness) or with the audit's identity consistency (sem, full).

python bench/rl_sanity.py [--reward brightness|sem|full] [--steps 8] [--ids 16] [--set rl.lr=0.03 ...]

--set overrides params.yaml keys for the run (e.g. rl.lr, rl.table_lr, rl.kl_weight, rl.clip_range,
rl.minibatches, rl.inner_epochs, sampler.steps). Needs checkpoints/coldstart and checkpoints/reference
(make run). Prints the training reward per step and the held-out values before and after.
"""
import argparse

import numpy as np
import torch

from rgsyn import rewards as R
from rgsyn.config import load_params, parse_overrides
from rgsyn.encoder import extract_features
from rgsyn.generator.dit import to_images
from rgsyn.generator.sampler import Sampler, per_sample_seeds
from rgsyn.generator.viz import to_uint8
from rgsyn.rl.advantages import group_advantages
from rgsyn.rl.core import load_reward_setup
from rgsyn.rl.dpok import dpok_update
from rgsyn.rl.policy import Policy


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reward", default="brightness", choices=("brightness", "sem", "full"))
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--ids", type=int, default=16)
    ap.add_argument("--set", nargs="*", default=[], help="key=value params overrides")
    a = ap.parse_args()
    p = load_params("params.yaml", parse_overrides(a.set))
    rp, sp = p.rl, p.sampler
    bundle, pids, enc, bank, s_pool, judge, _ = load_reward_setup(p)
    ids = np.linspace(0, len(pids) - 1, a.ids).astype(int)
    sampler = Sampler.from_params(bundle, sp)

    def reward(images, labels):  # uint8 images -> (B,) float64
        if a.reward == "brightness":
            return images.double().mean((1, 2, 3)) / 127.5 - 1
        parts = R.score_groups(extract_features(enc, images), labels, bank, rp.sigma, rp.alpha, rp.eps, rp.tau, s_pool)
        w = (1.0, 0.0, 0.0) if a.reward == "sem" else tuple(rp.weights)
        return parts["r_sem"] if a.reward == "sem" else R.combine_rewards(parts["r_sem"], parts["r_cov"],
                                                                          parts["r_exp"], w)

    def held_out():
        labels = torch.as_tensor(ids).repeat_interleave(8)
        images = sampler.images(labels, per_sample_seeds(99, len(labels)))
        out = {"reward": float(reward(images, labels).mean())}
        if a.reward != "brightness":
            out[f"top1 ({judge.name})"] = float(judge(images, labels)["hits"].float().mean())
        return out

    policy = Policy(bundle.transformer, rp.lora_rank, rp.full_finetune, rp.seed, rp.lora_targets)
    opt = torch.optim.AdamW(policy.param_groups(rp.lr, rp.table_lr), weight_decay=0.0)
    before = held_out()
    print("held-out before", before, flush=True)
    rng, g = np.random.default_rng(0), torch.Generator().manual_seed(0)
    for step in range(a.steps):
        labels = torch.as_tensor(ids).repeat_interleave(rp.group_size)
        seeds = rng.integers(0, 2 ** 62, len(labels)).tolist()
        start = [seeds[i - i % rp.group_size] for i in range(len(seeds))]
        traj = sampler.sample(labels, seeds, record=True, start_seeds=start)
        r = reward(to_uint8(to_images(bundle, traj.x0)), labels)
        adv = torch.as_tensor(group_advantages(labels.numpy(), r.numpy()), dtype=torch.float32)
        st = dpok_update(policy, sampler, traj, labels, adv, rp, opt, g, check_ratio=(step == 0))
        print(f"step {step}: training reward {float(r.mean()):.4f}, KL {st['kl']:.4f}, clip_frac {st['clip_frac']:.3f}",
              flush=True)
    print("held-out before", before, "after", held_out())


if __name__ == "__main__":
    main()
