"""What drives the downstream gain? The utility check's measurement (rgsyn/downstream/utility.py: held-out
train identities, never the test set) of real + synthetic against real only, paired by seed, as one
thing changes at a time from the defaults:

- `share`: the synthetic fraction of the trained batch (downstream.mix.share);
- `per_id`: synthetic images per identity (synth.per_id, a synthesis of its own per value);
- `accepted`: the audit's accepted rows only, or every sample (downstream.mix.accepted_only);
- `generator`: the cold start, DPOK and the default RL (rl.algorithm), each synthesised the same way;
- `selection`: dynamic sample selection's mode (off | fast | random | exact).

Every level trains --seeds seeds, `--workers` single-threaded processes at once; the real-only arm is
trained once per seed and shared. Prints one row per level (mean difference in points, its 95 %
t-interval, the per-seed differences) and writes --out (.json, .png). Generators and shards go under
--work; the pipeline's own outputs are read (make run first), never written.

python bench/utility.py [--params params.yaml] [--seeds 0 1 ... 9] [--workers 2]
    [--factors share,per_id,accepted,generator,selection] [--work checkpoints/utility] [--out docs/utility]
"""
import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from rgsyn import stats
from rgsyn.config import load_params
from rgsyn.downstream.utility import dataset as check_dataset

LEVELS = {"share": [0.05, 0.2, 0.3], "per_id": [4, 16], "accepted": [False], "generator": ["coldstart", "dpok"],
          "selection": ["off", "random", "exact"]}


def arm(args):
    params, overrides, seed = args
    import torch

    from rgsyn.downstream.utility import train_arm

    torch.set_num_threads(1)
    p = load_params(params, overrides)
    return train_arm(p, "real_only" if overrides is None else "full", seed)


def shards(params: str, work: Path, key: str, value) -> dict:
    """Params overrides of a level that needs its own synthesis (per_id, generator), made here once."""
    from rgsyn.rl.loop import run_rl
    from rgsyn.synth.run import synthesize

    p = load_params(params)
    out = work / f"synthetic-{key}-{value}"
    o = {"synth.out_dir": str(out), "synth.metrics": str(work / f"synth-{key}-{value}.json")}
    if key == "per_id":
        o["synth.per_id"] = value
    elif value == "coldstart":
        o["synth.checkpoint"] = p.rl.coldstart
    else:  # another RL algorithm, its own checkpoint
        o.update({"rl.algorithm": value, "rl.out_dir": str(work / f"rl-{value}"),
                  "rl.metrics": str(work / f"rl-{value}.json"), "synth.checkpoint": str(work / f"rl-{value}")})
    if not (out / "_manifest.json").exists() and not (out / "data" / "_manifest.json").exists():
        q = load_params(params, o)
        if key == "generator" and value != "coldstart":
            (work / f"rl-{value}.json").write_text(json.dumps(run_rl(q, progress=False), indent=1, default=float))
        synthesize(q, progress=False)
    return {"downstream.mix.synthetic": str(out)}


def overrides_of(params: str, work: Path, key: str, value) -> dict:
    if key == "share":
        return {"downstream.mix.share": value}
    if key == "accepted":
        return {"downstream.mix.accepted_only": value}
    if key == "selection":
        return {"downstream.selection.mode": value}
    return shards(params, work, key, value)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--factors", default=",".join(LEVELS))
    ap.add_argument("--work", default="checkpoints/utility")
    ap.add_argument("--out", default="docs/utility")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    params = work / "params.yaml"  # the file as it is now, whatever edits come during the run
    params.write_text(Path(a.params).read_text())
    p = load_params(params)
    check_dataset(p, write=True)  # the face pairs, once, before the processes' trainings read them
    t0 = time.time()
    levels = [("default", "—", {})] + [(k, v, overrides_of(str(params), work, k, v))
                                       for k in a.factors.split(",") for v in LEVELS[k]]
    jobs = [(None, s) for s in a.seeds] + [(i, s) for i in range(len(levels)) for s in a.seeds]
    with ProcessPoolExecutor(a.workers) as pool:
        res = list(pool.map(arm, [(str(params), None if i is None else levels[i][2], s) for i, s in jobs]))
    metric = "avg_acc" if "avg_acc" in res[0] else "mAP"
    real = np.array([m[metric] for (i, _), m in zip(jobs, res) if i is None])
    rows = []
    for i, (key, value, o) in enumerate(levels):
        full = np.array([m[metric] for (j, _), m in zip(jobs, res) if j == i])
        d = stats.paired_t(real, full)
        rows.append({"factor": key, "level": value, "overrides": o, "real_only": real.tolist(), "full": full.tolist(),
                     **{k: d[k] for k in ("mean", "ci_low", "ci_high", "p_value", "n")}})
    out = {"params": a.params, "metric": metric, "seeds": a.seeds, "interval": "t, 95 %", "rows": rows,
           "defaults": {"share": p.downstream.mix.share, "per_id": p.synth.per_id,
                        "accepted": p.downstream.mix.accepted_only, "generator": p.rl.algorithm,
                        "selection": p.downstream.selection.mode},
           "minutes": (time.time() - t0) / 60}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{a.out}.json").write_text(json.dumps(out, indent=1, default=str))
    plot(out, f"{a.out}.png")
    print(f"\n{a.params}: utility check (held-out train identities), {len(a.seeds)} paired seeds, {metric} points; "
          f"real only {100 * real.mean():.1f}; {out['minutes']:.0f} min\n")
    print("| factor | level | full − real only [95 % t-interval] | per seed |\n| --- | --- | --- | --- |")
    for r in rows:
        per = " ".join(f"{100 * (f - q):+.1f}" for f, q in zip(r["full"], r["real_only"]))
        print(f"| {r['factor']} | {r['level']} | {100 * r['mean']:+.1f} [{100 * r['ci_low']:+.1f}, "
              f"{100 * r['ci_high']:+.1f}] | {per} |")


def plot(out: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = out["rows"]
    y = np.arange(len(rows))[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(rows) + 1.2))
    mean = np.array([100 * r["mean"] for r in rows])
    err = np.array([[100 * (r["mean"] - r["ci_low"]) for r in rows], [100 * (r["ci_high"] - r["mean"]) for r in rows]])
    ax.errorbar(mean, y, xerr=err, fmt="o", capsize=3)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(y, [f"{r['factor']} = {r['level']}" for r in rows])
    ax.set_xlabel(f"Δ {out['metric']} vs real only (points, 95 % t-interval)")
    ax.set_title(f"utility check, {len(out['seeds'])} paired seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
