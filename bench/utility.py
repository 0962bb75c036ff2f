"""What drives the downstream gain? The utility check's measurement (rgsyn/downstream/utility.py: held-out
train identities, never the test set) of real + synthetic against real only, paired by seed, as one
thing changes at a time from the defaults:

- `share`: the synthetic fraction of the trained batch (downstream.mix.share);
- `per_id`: synthetic images per identity (synth.per_id, a synthesis of its own per value);
- `accepted`: the audit's accepted rows only, or every sample (downstream.mix.accepted_only);
- `curriculum`: the synthetic share falling from curriculum_start to curriculum_end over training
  instead of a constant one (downstream.mix.curriculum);
- `generator`: the cold start, DPOK and the default RL (rl.algorithm), each synthesised the same way;
- `selection`: dynamic sample selection's mode (off | fast | random | exact);
- `smoothing`: the synthetic rows' label smoothing (downstream.mix.smoothing; 1 = LSRO's uniform target).

Every level trains --seeds seeds, `--workers` single-threaded processes at once; the real-only arm is
trained once per seed and shared. Prints one row per level (its paired difference to real only and to
the default level in points, with 95 % t-intervals, and the per-seed differences) and writes --out
(.json, .png). Generators and shards go under --work; the pipeline's own outputs are read (make run
first), never written.

python bench/utility.py [--params params.yaml] [--seeds 0 1 ... 9] [--workers 2]
    [--factors share,per_id=4/16,accepted,curriculum,generator,selection,smoothing] [--work checkpoints/utility] [--out docs/utility]
    [--set key=value ...]   # overrides for every arm; --factors "" trains the default level alone
python bench/utility.py --table docs/utility.json   # the table of an earlier run
"""
import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from rgsyn import stats
from rgsyn.config import load_params, parse_overrides, parse_value, write_params
from rgsyn.downstream.utility import dataset as check_dataset

LEVELS = {"share": [0.05, 0.2, 0.3], "per_id": [4, 16], "accepted": [False], "curriculum": [True],
          "generator": ["coldstart", "dpok"], "selection": ["off", "random", "exact"],
          "smoothing": [0.3, 0.6, 1.0]}


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
    if key == "curriculum":
        return {"downstream.mix.curriculum": value}
    if key == "selection":
        return {"downstream.selection.mode": value}
    if key == "smoothing":
        return {"downstream.mix.smoothing": value}
    return shards(params, work, key, value)


def factors(spec: str) -> list[tuple[str, list]]:
    """`share,per_id=4/16` -> [("share", LEVELS["share"]), ("per_id", [4, 16])]: a factor's own levels
    after `=`, separated by `/` (rgsyn.config.parse_value: `selection=off` stays "off")."""
    out = []
    for tok in filter(None, spec.split(",")):
        key, _, vals = tok.partition("=")
        if key not in LEVELS:
            raise SystemExit(f"--factors: unknown factor {key!r}; one of {', '.join(LEVELS)}")
        out.append((key, [parse_value(v) for v in vals.split("/")] if vals else LEVELS[key]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--factors", default=",".join(LEVELS))
    ap.add_argument("--work", default="checkpoints/utility")
    ap.add_argument("--out", default="docs/utility")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="params overrides for every arm, real only included (e.g. downstream.train.pretrained_path=models/auditor)")
    ap.add_argument("--table", help="print the table of an earlier run's .json and stop (nothing trains)")
    a = ap.parse_args()
    if a.table:
        print(table(json.loads(Path(a.table).read_text())))
        return
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    params = work / "params.yaml"  # the file as it is now, whatever edits come during the run
    write_params(a.params, parse_overrides(a.set), params)
    p = load_params(params)
    check_dataset(p, write=True)  # the face pairs, once, before the processes' trainings read them
    t0 = time.time()
    levels = [("default", "—", {})] + [(k, v, overrides_of(str(params), work, k, v)) for k, vs in factors(a.factors)
                                       for v in vs]
    for _, _, o in levels:  # a wrong level fails here, not after the first arms have trained
        load_params(params, o)
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
    out = {"params": " ".join([a.params, *a.set]), "metric": metric, "seeds": a.seeds, "interval": "t, 95 %", "rows": rows,
           "defaults": {"share": p.downstream.mix.share, "per_id": p.synth.per_id,
                        "accepted": p.downstream.mix.accepted_only,
                        "curriculum": p.downstream.mix.curriculum, "generator": p.rl.algorithm,
                        "selection": p.downstream.selection.mode, "smoothing": p.downstream.mix.smoothing},
           "minutes": (time.time() - t0) / 60}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{a.out}.json").write_text(json.dumps(out, indent=1, default=str))
    plot(out, f"{a.out}.png")
    print(table(out))


def table(out: dict) -> str:
    """Markdown: each level's paired difference to real only and to the default level (same seeds, so
    a level's own effect), both with 95 % t-intervals, and the per-seed differences to real only."""
    rows, real = out["rows"], np.array(out["rows"][0]["real_only"])
    base = np.array(rows[0]["full"])
    lines = [f"{out['params']}: utility check (held-out train identities), {len(out['seeds'])} paired seeds, "
             f"{out['metric']} points; real only {100 * real.mean():.1f} ± {100 * real.std(ddof=1):.1f}; "
             f"{out['minutes']:.0f} min", "",
             "| factor | level | − real only [95 % t-interval] | − default [95 % t-interval] | per seed − real only |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        per = " ".join(f"{100 * (f - q):+.1f}" for f, q in zip(r["full"], r["real_only"]))
        v = stats.paired_t(base, np.array(r["full"])) if r is not rows[0] else None
        vs = "—" if v is None else f"{100 * v['mean']:+.1f} [{100 * v['ci_low']:+.1f}, {100 * v['ci_high']:+.1f}]"
        lines.append(f"| {r['factor']} | {r['level']} | {100 * r['mean']:+.1f} [{100 * r['ci_low']:+.1f}, "
                     f"{100 * r['ci_high']:+.1f}] | {vs} | {per} |")
    return "\n".join(lines)


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
