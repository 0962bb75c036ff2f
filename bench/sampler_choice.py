"""Which sampling procedure to ship: identity consistency (top-1 of the own identity, read by the
audit's encoder) and R_sem of cold-start samples for DDIM steps x eta x guidance x spacing, with the
seconds each took. Same identities and noise seeds for every row, so each row's top-1 change against
the first row comes with a paired bootstrap s.e. over identities.

python bench/sampler_choice.py [--params face/params.yaml] [--per-id 2]
    [--grid 20:0:2,20:1:2,10:1:2,5:1:2,5:1:1,5:1:3,5:0.5:2,5:1:3:trailing]
A grid entry is steps:eta:guidance[:spacing] (spacing: leading | trailing | linspace; default the
params file's).
Needs the cold-start generator and the reference encoder of that params file (make run, make run-face).
"""
import argparse
import time

import torch

from rgsyn import rewards as R
from rgsyn import stats
from rgsyn.config import load_params
from rgsyn.encoder import extract_features
from rgsyn.generator.sampler import Sampler, per_sample_seeds
from rgsyn.rl.core import load_reward_setup


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--per-id", type=int, default=2)
    ap.add_argument("--grid", default="20:0:2,20:1:2,10:1:2,5:1:2,5:1:1,5:1:3,5:0.5:2")
    a = ap.parse_args()
    p = load_params(a.params)
    rp = p.rl
    bundle, pids, enc, bank, s_pool, judge, _ = load_reward_setup(p)
    labels = torch.arange(len(pids)).repeat_interleave(a.per_id)
    seeds = per_sample_seeds(123, len(labels))
    print(f"| steps | eta | guidance | spacing | top-1 ({judge.name}) | vs first row ± s.e. | R_sem "
          f"| seconds ({len(labels)} images) |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    first = None
    for spec in a.grid.split(","):
        steps, eta, g, spacing = (spec.split(":") + [p.sampler.spacing])[:4]
        t0 = time.time()
        imgs = Sampler(bundle, int(steps), eta=float(eta), guidance=float(g), spacing=spacing).images(labels, seeds, 150)
        dt = time.time() - t0
        hits = judge(imgs, labels)["hits"].double().view(len(pids), a.per_id).mean(1).numpy()  # per identity
        first = hits if first is None else first
        d = stats.paired_difference(first, hits)
        r_sem = R.group_values(extract_features(enc, imgs), labels, bank, rp.sigma, rp.alpha, rp.eps, rp.tau, s_pool)
        print(f"| {steps} | {eta} | {g} | {spacing} | {hits.mean():.3f} | {d['mean']:+.4f} ± {d['se']:.4f} "
              f"| {r_sem['r_sem'].mean():.4f} | {dt:.1f} |", flush=True)


if __name__ == "__main__":
    main()
