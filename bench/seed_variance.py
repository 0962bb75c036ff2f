"""How much does the real-only baseline move from seed to seed, per trainer variant? The ladder's
power comes from this spread, so a variance-reducing change is chosen here, on real only, never on a
rung difference it is meant to resolve.

Each variant (`--variant name:key=value,key=value`; `base` = the params as they are) trains the ladder's
real_only row (rgsyn.ablation.train_row) over --seeds, `--workers` single-threaded processes at once,
and prints per variant the mean and sample std of the metric over seeds, the half-width of a 95 %
t-interval of a paired difference of two such rows if they were independent (t · √2 · std / √n, the
conservative case), the seeds that half-width would need to reach --target, and the seconds one
training takes. `--versus ROW` trains that ladder row too and prints its paired difference to real_only
per variant: whether a gain survives the variant, measured after the variant was chosen.

python bench/seed_variance.py [--params params.yaml] [--seeds 0 1 2 3 4 5 6 7] [--workers 2]
    [--variant base --variant ema:downstream.train.ema=0.998 ...] [--target 1.5] [--versus full]
"""
import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy import stats as st

from rgsyn import stats
from rgsyn.ablation import GENERATOR, make_generator
from rgsyn.config import parse_overrides


def one(args):
    params, row, seed, shards, extra = args
    import torch

    from rgsyn.ablation import train_row

    torch.set_num_threads(1)
    t0 = time.time()
    m = train_row(params, row, seed, shards, extra=extra)
    return {**m, "seconds": time.time() - t0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--variant", action="append", default=None, help="name:key=value,key=value")
    ap.add_argument("--target", type=float, default=1.5, help="half-width to reach, in metric points")
    ap.add_argument("--versus", help="a ladder row (e.g. full) trained too, per variant and seed: its paired "
                                     "difference to real_only with a 95 %% t-interval (not what a variant is chosen on)")
    a = ap.parse_args()
    variants = {}
    for spec in a.variant or ["base"]:
        name, _, kv = spec.partition(":")
        variants[name] = parse_overrides([x for x in kv.split(",") if x])
    rows = ["real_only"] + ([a.versus] if a.versus else [])
    shards = {r: make_generator(a.params, GENERATOR[r]) if GENERATOR[r] else None for r in rows}
    jobs = [(name, row, s) for name in variants for row in rows for s in a.seeds]
    with ProcessPoolExecutor(a.workers) as pool:
        res = list(pool.map(one, [(a.params, row, s, shards[row], variants[name]) for name, row, s in jobs]))
    metric = "avg_acc" if "avg_acc" in res[0] else "mAP"
    n = len(a.seeds)
    t = st.t.ppf(0.975, n - 1)
    print(f"\n{a.params}, real_only, seeds {a.seeds}; {metric} in points\n")
    print(f"| variant | per seed | mean | std | paired half-width if independent | seeds for ±{a.target} | s / training |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    by = {}  # (variant, row) -> metrics per seed, in seed order
    for (name, row, _), r in zip(jobs, res):
        by.setdefault((name, row), []).append(r)
    for name in variants:
        ms = by[name, "real_only"]
        x = 100 * np.array([r[metric] for r in ms])
        sd = x.std(ddof=1)
        hw = t * np.sqrt(2) * sd / np.sqrt(n)
        need = int(np.ceil((1.96 * np.sqrt(2) * sd / a.target) ** 2))
        print(f"| {name} | {' '.join(f'{v:.1f}' for v in x)} | {x.mean():.1f} | {sd:.2f} | {hw:.2f} | ≥ {need} "
              f"| {np.mean([r['seconds'] for r in ms]):.0f} |")
    if a.versus:
        print(f"\n| variant | {a.versus} per seed | {a.versus} mean | {a.versus} − real_only per seed | "
              "paired difference [95 % t-interval], p |\n| --- | --- | --- | --- | --- |")
        for name in variants:
            x, y = (np.array([r[metric] for r in by[name, w]]) for w in ("real_only", a.versus))
            d = stats.paired_t(x, y)
            print(f"| {name} | {' '.join(f'{100 * v:.1f}' for v in y)} | {100 * y.mean():.1f} | "
                  f"{' '.join(f'{100 * (q - p):+.1f}' for p, q in zip(x, y))} | {100 * d['mean']:+.1f} "
                  f"[{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}], p = {d['p_value']:.3f} |")


if __name__ == "__main__":
    main()
