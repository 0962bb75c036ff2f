"""What the selection score is worth on the ladder's dss rung: the rung's trainer (cold-start shards,
64 real + 16 candidates, 8 kept) under each selection mode, over the ablation seeds.

python bench/selection_modes.py [--modes off,random,fast,exact] [--seeds 0 1 2 3 4] [--workers 2]

Needs the ladder's cold-start shards (`make ablation` makes them under ablation.work_dir). "off"
trains on a draw of the kept count without selection (the coldstart_synth rung), "random" keeps a
random half of twice the candidates (the dss_random rung), "fast" and "exact" keep the half with the
smallest Δl (docs/selection.md). Prints per-seed mAP, and each mode's paired difference to "random"
(the score against chance at the same composition) and to "off", with bootstrap 95 % intervals.
"""
import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from rgsyn import stats
from rgsyn.ablation import generator_overrides, train_row
from rgsyn.config import load_params


def train(job):
    params, mode, seed, shards = job  # the dss rung with its mode replaced ("off" is coldstart_synth's params)
    return train_row(params, "dss", seed, shards, threads=1, extra={"downstream.selection.mode": mode})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", default="off,random,fast,exact")
    ap.add_argument("--seeds", type=int, nargs="*")
    ap.add_argument("--workers", type=int)
    ap.add_argument("--params", default="params.yaml")
    a = ap.parse_args()
    p = load_params(a.params)
    shards = generator_overrides(p, "coldstart")["synth.out_dir"]
    if not Path(shards).exists():
        raise FileNotFoundError(f"{shards}: the ladder's cold-start shards are missing; run `make ablation`")
    modes, seeds = a.modes.split(","), a.seeds or list(p.ablation.seeds)
    jobs = [(a.params, m, s, shards) for m in modes for s in seeds]
    with ProcessPoolExecutor(a.workers or p.ablation.workers) as ex:
        runs = list(ex.map(train, jobs))
    maps = {m: [r["mAP"] for (_, mm, _, _), r in zip(jobs, runs) if mm == m] for m in modes}
    print(f"dss rung, cold-start shards {shards}, seeds {seeds}\n")
    print("| mode | mAP (%) per seed | mean | vs random [95 % CI], p | vs off [95 % CI], p |\n| --- | --- | --- | --- | --- |")
    for m in modes:
        cells = []
        for ref in ("random", "off"):
            if ref == m or ref not in maps:
                cells.append("")
                continue
            d = stats.paired_difference(maps[ref], maps[m])
            cells.append(f"{100 * d['mean']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}], "
                         f"p = {d['p_value']:.3f}")
        print(f"| {m} | {' / '.join(f'{100 * v:.1f}' for v in maps[m])} | {100 * sum(maps[m]) / len(maps[m]):.1f} | "
              + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
