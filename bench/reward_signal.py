"""Does the reward point where the audit's identity consistency points? Among samples of one identity
(the cold-start generator, the shipping sampler), is the one with the highest reward more often
recognised as its identity by the audit's independent encoder than the one with the lowest?

python bench/reward_signal.py [--per-id 8] [--seed 5]

For every identity, --per-id samples; per reward (R_sem, and eq 11 with rl.weights): the top-1
consistency of all samples, of the best-of-n and of the worst-of-n by the reward, and the correlation
of reward and top-1 hit within identities (both centred per identity). Needs checkpoints/coldstart,
checkpoints/reference and the memory bank (make run). A policy gradient on group-relative advantages
can only move what this within-identity correlation carries.
"""
import argparse

import torch

from rgsyn import rewards as R
from rgsyn.config import load_params
from rgsyn.encoder import extract_features
from rgsyn.generator.sampler import Sampler, per_sample_seeds
from rgsyn.rl.core import load_reward_setup


def within_correlation(score: torch.Tensor, hits: torch.Tensor) -> float:
    """Pearson correlation of (C, n) scores and hits after centring each row (identity)."""
    z, h = score - score.mean(1, keepdim=True), hits - hits.mean(1, keepdim=True)
    return float((z * h).sum() / (z.pow(2).sum().sqrt() * h.pow(2).sum().sqrt()).clamp_min(1e-12))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-id", type=int, default=8)
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args()
    p = load_params()
    rp, sp = p.rl, p.sampler
    bundle, pids, enc, bank, s_pool, judge, _ = load_reward_setup(p)
    n = a.per_id
    labels = torch.arange(len(pids)).repeat_interleave(n)
    images = Sampler.from_params(bundle, sp).images(labels, per_sample_seeds(a.seed, len(labels)))
    parts = R.score_groups(extract_features(enc, images), labels, bank, rp.sigma, rp.alpha, rp.eps, rp.tau, s_pool)
    combined = R.combine_rewards(parts["r_sem"], parts["r_cov"], parts["r_exp"], tuple(rp.weights))
    hits = judge(images, labels)["hits"].view(-1, n).float()  # (C, n)
    print(f"{len(pids)} identities x {n} samples; judge: {judge.name}; top-1 of all samples {hits.mean():.3f}")
    for name, score in (("r_sem", parts["r_sem"]), ("eq11", combined)):
        s = score.view(-1, n).float()
        best = hits.gather(1, s.argmax(1, keepdim=True)).mean()
        worst = hits.gather(1, s.argmin(1, keepdim=True)).mean()
        print(f"{name}: best-of-{n} top-1 {best:.3f}, worst-of-{n} {worst:.3f}, "
              f"within-identity correlation {within_correlation(s, hits):.3f}")


if __name__ == "__main__":
    main()
