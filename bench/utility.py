"""What drives the downstream gain? The utility check's measurement (rgsyn/downstream/utility.py: held-out
train identities, never the test set) of real + synthetic against real only, paired by (fold, seed), as
one thing changes at a time from the defaults:

- `share`: the synthetic fraction of the trained batch (downstream.mix.share);
- `per_id`: synthetic images per identity (synth.per_id, a synthesis of its own per value);
- `accepted`: the audit's accepted rows only, or every sample (downstream.mix.accepted_only);
- `curriculum`: the synthetic share falling from curriculum_start to curriculum_end over training
  instead of a constant one (downstream.mix.curriculum);
- `generator`: the cold start, DPOK and the default RL (rl.algorithm), each synthesised the same way;
- `selection`: dynamic sample selection's mode (off | fast | random | exact);
- `smoothing`: the synthetic rows' label smoothing (downstream.mix.smoothing; 1 = LSRO's uniform target).

Every level trains --folds folds (default: the params' utility.folds) × --seeds seeds, `--workers`
single-threaded processes at once; the real-only arm is trained once per (fold, seed) and shared. Prints
one row per level (its paired difference to real only and to the default level in points, with 95 %
t-intervals, and the per-pair differences) and writes --out
(.json, .png). Generators and shards go under --work; the pipeline's own outputs are read (make run
first), never written.

python bench/utility.py [--params params.yaml] [--seeds 0 1 ... 9] [--folds F] [--workers 2]
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
from rgsyn.downstream.utility import datasets as check_datasets

LEVELS = {"share": [0.05, 0.2, 0.3], "per_id": [4, 16], "accepted": [False], "curriculum": [True],
          "generator": ["coldstart", "dpok"], "selection": ["off", "random", "exact"],
          "smoothing": [0.3, 0.6, 1.0]}


def arm(args):
    params, overrides, fold, seed = args
    import torch

    from rgsyn.downstream.utility import train_arm

    torch.set_num_threads(1)
    p = load_params(params, overrides)
    return train_arm(p, "real_only" if overrides is None else "full", fold, seed)


MIX_KEYS = {"share": "downstream.mix.share", "accepted": "downstream.mix.accepted_only",
            "curriculum": "downstream.mix.curriculum", "selection": "downstream.selection.mode",
            "smoothing": "downstream.mix.smoothing"}  # the factors that change the arms' params alone


def synthesis_overrides(params: str, work: Path, key: str, value) -> dict:
    """Params overrides of the synthesis of a level that needs its own (per_id, generator: another RL
    algorithm gets its own checkpoint, the cold start synthesises from its own), its shards under `work`."""
    o = {"synth.out_dir": str(work / f"synthetic-{key}-{value}"), "synth.metrics": str(work / f"synth-{key}-{value}.json")}
    if key == "per_id":
        o["synth.per_id"] = value
    elif value == "coldstart":
        o["synth.checkpoint"] = load_params(params).rl.coldstart
    else:
        o.update({"rl.algorithm": value, "rl.out_dir": str(work / f"rl-{value}"),
                  "rl.metrics": str(work / f"rl-{value}.json"), "synth.checkpoint": str(work / f"rl-{value}")})
    return o


def level_overrides(params: str, work: Path, key: str, value) -> tuple[dict, dict]:
    """(the overrides of the level's own synthesis, {} when it has none; the overrides of its arms)."""
    if key in MIX_KEYS:
        return {}, {MIX_KEYS[key]: value}
    o = synthesis_overrides(params, work, key, value)
    return o, {"downstream.mix.synthetic": o["synth.out_dir"]}


def plan_levels(params: str, work: Path, spec: str) -> list[tuple[str, object, dict, dict]]:
    """[(factor, level, synthesis overrides, arm overrides)] of the --factors spec, every level's params
    loaded first: a wrong level (a per_id or generator one too) fails here, before any synthesis or
    training has spent its minutes."""
    plan = [(k, v, *level_overrides(params, work, k, v)) for k, vs in factors(spec) for v in vs]
    for _, _, syn, arms in plan:
        load_params(params, syn)
        load_params(params, arms)
    return plan


def synthesize_level(params: str, work: Path, key: str, value, o: dict) -> None:
    """A level's shards (per_id, generator; RL first for another algorithm), made once: a folder that
    already holds them is kept."""
    from rgsyn.rl.loop import run_rl
    from rgsyn.synth.run import synthesize

    out = Path(o["synth.out_dir"])
    if (out / "_manifest.json").exists() or (out / "data" / "_manifest.json").exists():
        return
    q = load_params(params, o)
    if key == "generator" and value != "coldstart":
        (work / f"rl-{value}.json").write_text(json.dumps(run_rl(q, progress=False), indent=1, default=float))
    synthesize(q, progress=False)


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
    ap.add_argument("--folds", type=int, help="folds of the held-out identities (default: the params' utility.folds)")
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
    sets = parse_overrides(a.set)
    if a.folds is not None:
        sets["utility.folds"] = a.folds
    write_params(a.params, sets, params)
    p = load_params(params)
    plan = plan_levels(str(params), work, a.factors)
    check_datasets(p, write=True)  # every fold's face pairs, once, before the processes' trainings read them
    units = [(f, s) for f in range(p.utility.folds) for s in a.seeds]
    t0 = time.time()
    for key, value, syn, _ in plan:
        if syn:
            synthesize_level(str(params), work, key, value, syn)
    levels = [("default", "—", {})] + [(k, v, o) for k, v, _, o in plan]
    jobs = [(None, u) for u in units] + [(i, u) for i in range(len(levels)) for u in units]
    with ProcessPoolExecutor(a.workers) as pool:
        res = list(pool.map(arm, [(str(params), None if i is None else levels[i][2], *u) for i, u in jobs]))
    metric = "avg_acc" if "avg_acc" in res[0] else "mAP"
    real = np.array([m[metric] for (i, _), m in zip(jobs, res) if i is None])
    rows = []
    for i, (key, value, o) in enumerate(levels):
        full = np.array([m[metric] for (j, _), m in zip(jobs, res) if j == i])
        d = stats.paired_t(real, full)
        rows.append({"factor": key, "level": value, "overrides": o, "real_only": real.tolist(), "full": full.tolist(),
                     **{k: d[k] for k in ("mean", "ci_low", "ci_high", "p_value", "n")}})
    out = {"params": " ".join([a.params, *a.set] + ([f"--folds {a.folds}"] if a.folds is not None else [])),
           "metric": metric, "folds": p.utility.folds, "seeds": a.seeds, "pairs": [list(u) for u in units],
           "interval": "t, 95 %", "rows": rows,
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
    """Markdown: each level's paired difference to real only and to the default level (same pairs, so
    a level's own effect), both with 95 % t-intervals, and the per-pair differences to real only."""
    rows, real = out["rows"], np.array(out["rows"][0]["real_only"])
    base = np.array(rows[0]["full"])
    lines = [f"{out['params']}: utility check (held-out train identities), {pairs_label(out)}, "
             f"{out['metric']} points; real only {100 * real.mean():.1f} ± {100 * real.std(ddof=1):.1f}; "
             f"{out['minutes']:.0f} min", "",
             f"| factor | level | − real only [95 % t-interval] | − default [95 % t-interval] | "
             f"per {'pair' if 'folds' in out else 'seed'} − real only |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        per = " ".join(f"{100 * (f - q):+.1f}" for f, q in zip(r["full"], r["real_only"]))
        v = stats.paired_t(base, np.array(r["full"])) if r is not rows[0] else None
        vs = "—" if v is None else f"{100 * v['mean']:+.1f} [{100 * v['ci_low']:+.1f}, {100 * v['ci_high']:+.1f}]"
        lines.append(f"| {r['factor']} | {r['level']} | {100 * r['mean']:+.1f} [{100 * r['ci_low']:+.1f}, "
                     f"{100 * r['ci_high']:+.1f}] | {vs} | {per} |")
    return "\n".join(lines)


def pairs_label(out: dict) -> str:
    """'30 pairs (3 folds × 10 seeds)'; a run of one held-out split (no `folds`): '10 paired seeds'."""
    if "folds" not in out:
        return f"{len(out['seeds'])} paired seeds"
    return f"{len(out['rows'][0]['real_only'])} pairs ({out['folds']} folds × {len(out['seeds'])} seeds)"


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
    ax.set_title(f"utility check, {pairs_label(out)}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
