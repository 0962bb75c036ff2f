"""How much does the real-only baseline move from seed to seed, per trainer variant? The ladder's
power comes from this spread, so a variance-reducing change is chosen here, on real only, never on a
rung difference it is meant to resolve.

Each variant (`--variant name:key=value,key=value`; `base` = the params as they are) trains the ladder's
real_only row (rgsyn.ablation.train_row) over --seeds, `--workers` single-threaded processes at once,
and prints per variant the mean and sample std of the metric over seeds, the half-width of a 95 %
t-interval of a paired difference of two such rows if they were independent (t · √2 · std / √n, the
conservative case), the seeds that half-width would need to reach --target, and the seconds one
training takes.

python bench/seed_variance.py [--params params.yaml] [--seeds 0 1 2 3 4 5 6 7] [--workers 2]
    [--variant base --variant ema:downstream.train.ema=0.998 ...] [--target 1.5]
"""
import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy import stats as st

from rgsyn.config import parse_overrides


def one(args):
    params, seed, extra = args
    import torch

    from rgsyn.ablation import train_row

    torch.set_num_threads(1)
    t0 = time.time()
    m = train_row(params, "real_only", seed, None, extra=extra)
    return {**m, "seconds": time.time() - t0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--variant", action="append", default=None, help="name:key=value,key=value")
    ap.add_argument("--target", type=float, default=1.5, help="half-width to reach, in metric points")
    a = ap.parse_args()
    variants = {}
    for spec in a.variant or ["base"]:
        name, _, kv = spec.partition(":")
        variants[name] = parse_overrides([x for x in kv.split(",") if x])
    jobs = [(name, s) for name in variants for s in a.seeds]
    with ProcessPoolExecutor(a.workers) as pool:
        res = list(pool.map(one, [(a.params, s, variants[name]) for name, s in jobs]))
    metric = "avg_acc" if "avg_acc" in res[0] else "mAP"
    n = len(a.seeds)
    t = st.t.ppf(0.975, n - 1)
    print(f"\n{a.params}, real_only, seeds {a.seeds}; {metric} in points\n")
    print(f"| variant | per seed | mean | std | paired half-width if independent | seeds for ±{a.target} | s / training |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in variants:
        rows = [r for (v, _), r in zip(jobs, res) if v == name]
        x = 100 * np.array([r[metric] for r in rows])
        sd = x.std(ddof=1)
        hw = t * np.sqrt(2) * sd / np.sqrt(n)
        need = int(np.ceil((1.96 * np.sqrt(2) * sd / a.target) ** 2))
        print(f"| {name} | {' '.join(f'{v:.1f}' for v in x)} | {x.mean():.1f} | {sd:.2f} | {hw:.2f} | ≥ {need} "
              f"| {np.mean([r['seconds'] for r in rows]):.0f} |")


if __name__ == "__main__":
    main()
