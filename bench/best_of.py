"""Best-of-n at synthesis (`synth.candidates`), apart from RL: for n candidates per released sample,
the one with the highest eq. 11 reward is kept (rgsyn.synth.engine.best_of, what the synthesize stage
runs). Read by the audit's encoder, which no reward saw: identity consistency (top-1), within-identity
diversity (mean pairwise distance of its features among an identity's kept samples) and the Fréchet
distance to the real member images; each row against n = 1 on the same noise, with s.e. paired over
identities. The candidates are nested: n = 2 keeps the best of the first two of n = 8's, so rows
differ by the selection alone.

python bench/best_of.py [--checkpoint checkpoints/coldstart] [--per-id 4] [--n 1,2,4,8] [--params params.yaml]
Needs the default run's outputs (make run).
"""
import argparse

import numpy as np
import torch

from rgsyn import stats
from rgsyn.config import load_params
from rgsyn.encoder import extract_features
from rgsyn.eval.fidelity import paired_frechet
from rgsyn.generator.sampler import Sampler, per_sample_seeds
from rgsyn.rl.core import diversity, load_reward_setup, per_identity
from rgsyn.synth.engine import best_of, candidate_seed
from rgsyn.synth.run import load_generator


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--checkpoint", default="checkpoints/coldstart")
    ap.add_argument("--per-id", type=int, default=4)
    ap.add_argument("--n", default="1,2,4,8")
    a = ap.parse_args()
    p = load_params(a.params)
    setup = load_reward_setup(p)
    bundle, pids = load_generator(a.checkpoint)
    assert pids == setup.pids, "the checkpoint's identities differ from the reward setup's"
    ns = [int(v) for v in a.n.split(",")]
    top, k, c = max(ns), a.per_id, len(pids)
    labels = torch.arange(c).repeat_interleave(k)  # (M,) released samples
    seeds = per_sample_seeds(2024, len(labels))
    drawn = labels.repeat_interleave(top)  # (M·top,), candidates of a sample consecutive
    cand = [candidate_seed(s, j) for s in seeds for j in range(top)]
    images = Sampler.from_params(bundle, p.sampler).images(drawn, cand)
    feats = extract_features(setup.encoder, images)
    grid = torch.arange(len(drawn)).view(len(labels), top)
    rows, first = [], None
    for n in ns:
        cols = grid[:, :n].reshape(-1)  # the first n candidates of every sample
        keep = cols[best_of(feats[cols], drawn[cols], n, setup.bank, p.rl, setup.s_pool)]
        audit = setup.judge.features(images[keep])
        hits = per_identity(setup.judge(images[keep], labels, audit)["hits"], c, k)
        res = {"n": n, "top1": hits, "diversity": diversity(audit, c, k), "audit": audit}
        first = first or res
        d = stats.paired_difference(first["top1"], hits)
        fd = paired_frechet(setup.judge.real_feats, first["audit"], audit, labels)
        rows.append(f"| {n} | {hits.mean():.3f} | {d['mean']:+.3f} ± {d['se']:.3f} | "
                    f"{res['diversity'].mean() / first['diversity'].mean():.3f} | {fd['after']:.4f} | "
                    f"{fd['change']:+.4f} ± {fd['se']:.4f} |")
    print(f"{a.checkpoint}: {c} identities x {k} released samples, candidates nested up to {top}\n")
    print("| candidates | top-1 (audit) | vs n = 1 ± paired s.e. | diversity / n = 1 | Fréchet (audit) | vs n = 1 ± s.e. |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
