"""Which sampling procedure to ship: identity consistency (top-1 of the own identity, read by the
audit's encoder) and R_sem of cold-start samples for DDIM steps x eta x guidance, with the seconds each
took. Same identities and noise seeds for every row.

python bench/sampler_choice.py [--per-id 2] [--grid 20:0:2,20:1:2,10:1:2,5:1:2,5:1:1,5:1:3,5:0.5:2]
Needs checkpoints/coldstart and checkpoints/reference (make run).
"""
import argparse
import time

import torch

from rgsyn import rewards as R
from rgsyn.config import load_params
from rgsyn.data.images import load_images
from rgsyn.data.layouts import member_split
from rgsyn.encoder import extract_features, load_encoder
from rgsyn.generator.coldstart import load_coldstart
from rgsyn.generator.sampler import Sampler, per_sample_seeds
from rgsyn.identity import make_judge
from rgsyn.memory_bank import by_class, ensure_memory_bank, load_memory_bank


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-id", type=int, default=2)
    ap.add_argument("--grid", default="20:0:2,20:1:2,10:1:2,5:1:2,5:1:1,5:1:3,5:0.5:2")
    a = ap.parse_args()
    p = load_params()
    bundle, pids = load_coldstart(p.rl.coldstart)
    enc = load_encoder(p.reference.out_dir)
    members, _ = member_split(p.data)
    table = {q: i for i, q in enumerate(pids)}
    judge = make_judge(p, enc, load_images([r.path for r in members], enc.cfg.height, enc.cfg.width),
                       torch.tensor([table[r.pid] for r in members]), len(pids))
    ensure_memory_bank(p.rl.bank, p.data, enc)
    feats, bank_pids = load_memory_bank(p.rl.bank)
    bank = [b.double() for b in by_class(feats, bank_pids, pids)]
    labels = torch.arange(len(pids)).repeat_interleave(a.per_id)
    seeds = per_sample_seeds(123, len(labels))
    print(f"| steps | eta | guidance | top-1 ({judge.name}) | R_sem | seconds ({len(labels)} images) |\n"
          "| --- | --- | --- | --- | --- | --- |")
    for spec in a.grid.split(","):
        steps, eta, g = spec.split(":")
        t0 = time.time()
        imgs = Sampler(bundle, int(steps), eta=float(eta), guidance=float(g)).images(labels, seeds, 150)
        dt = time.time() - t0
        top1 = judge(imgs, labels)["top1"]
        r_sem = R.group_values(extract_features(enc, imgs), labels, bank, 0.5, 0.5, 0.1, 0.05, R.pooled_spread(bank))
        print(f"| {steps} | {eta} | {g} | {top1:.3f} | {r_sem['r_sem'].mean():.4f} | {dt:.1f} |", flush=True)


if __name__ == "__main__":
    main()
