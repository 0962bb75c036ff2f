"""Do the defaults transfer? The default pipeline, params.yaml unchanged but for where the data and the
outputs live, on an identity set it was not tuned on: real only vs the full method, paired by seed.

python bench/transfer.py [--root data/street] [--layout market1501] [--seeds 0 1 2 3 4] [--work checkpoints/transfer]
                         [--reuse]

Without --root the second procedural set (rgsyn.data.procedural.render_street: other clothing and camera models,
128x64, 120 train identities) is rendered into data/street first; with --root any re-id dataset in a
layout rgsyn reads. Every stage runs in order in this process (data, reference, cold start from the
committed prior, RL, synthesis with the audit, the utility check on the train split, then the
downstream trainer per seed with and without the synthetic data), all outputs under --work. Prints the
RL figures, the utility check's verdict, per seed mAP and the paired difference with its 95 %
t-interval; writes <work>/transfer.json. --reuse keeps the outputs of the stages a previous
run under --work finished (their <stage>.json is there) and reruns only the recognition rows: for a
change that touches the downstream trainer alone.
"""
import argparse
import json
import time
from pathlib import Path

import yaml

from rgsyn import stats
from rgsyn.config import load_params


def work_params(root: str, layout: str, work: Path) -> Path:
    """params.yaml with the dataset and every output path moved under `work`; nothing else changes."""
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["data"].update(layout=layout, root=root, index=str(work / "index.parquet"), summary=str(work / "index.json"))
    for sec, keys in {"reference": ("out_dir", "val_out_dir", "metrics"), "coldstart": ("out_dir", "metrics", "grid"),
                      "rl": ("bank", "out_dir", "metrics"), "synth": ("out_dir", "metrics"),
                      "audit": ("novel_out_dir", "report"), "downstream": ("out_dir", "metrics"),
                      "report": ("markdown", "embedding")}.items():
        for k in keys:
            raw[sec][k] = str(work / Path(raw[sec][k]).name) if k != "report" else str(work / "privacy")
    raw["coldstart"]["out_dir"], raw["rl"]["coldstart"] = str(work / "coldstart"), str(work / "coldstart")
    raw["rl"]["out_dir"] = raw["synth"]["checkpoint"] = str(work / "rl")
    raw["synth"]["out_dir"] = raw["downstream"]["mix"]["synthetic"] = str(work / "synthetic")
    raw["utility"]["metrics"] = str(work / "utility.json")
    raw["tracking"]["uri"] = f"sqlite:///{work / 'mlflow.db'}"
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="")
    ap.add_argument("--layout", default="market1501")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--work", default="checkpoints/transfer")
    ap.add_argument("--reuse", action="store_true", help="keep the finished stages' outputs under --work")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    root = a.root
    if not root:
        from rgsyn.data.procedural.render_street import render_street

        root = "data/street"
        render_street(root)
    p = load_params(work_params(root, a.layout, work))
    from rgsyn.ablation import train_row
    from rgsyn.data.stage import prepare
    from rgsyn.downstream import utility as check
    from rgsyn.downstream.run import save_dirs, train_seed
    from rgsyn.generator.coldstart import run_coldstart
    from rgsyn.privacy.run import run_privacy
    from rgsyn.rl.loop import run_rl
    from rgsyn.synth.run import synthesize

    t0, times = time.time(), {}
    def reference():  # every seed of the reference stage: the encoder and RL's validation encoder
        return [train_seed(p, "reference", s, d or False) for s, d in zip(p.reference.train.seeds,
                                                                          save_dirs(p, "reference"))]

    def utility():  # the utility check as the pipeline runs it, on this set's train split
        check.datasets(p, write=True)
        per = [{"fold": f, "seed": s, **{arm: check.train_arm(p, arm, f, s) for arm in check.ARMS}}
               for f in range(p.utility.folds) for s in p.utility.seeds]
        out = check.summarize(p, per)
        Path(p.utility.metrics).write_text(json.dumps(out, indent=1))
        return out

    for name, fn in (("data", lambda: prepare(p.data)), ("reference", reference),
                     ("coldstart", lambda: run_coldstart(p)), ("rl", lambda: run_rl(p)),
                     ("synthesize", lambda: synthesize(p)), ("privacy", lambda: run_privacy(p)),
                     ("utility", utility)):
        if a.reuse and (work / f"{name}.json").exists():
            print(f"{name}: reusing {work / (name + '.json')}")
            continue
        s = time.time()
        out = fn()
        times[name] = time.time() - s
        (work / f"{name}.json").write_text(json.dumps(out, indent=1, default=str)[:200_000])
    params = str(work / "params.yaml")
    real = [train_row(params, "real_only", s, None)["mAP"] for s in a.seeds]
    full = [train_row(params, "full", s, p.synth.out_dir)["mAP"] for s in a.seeds]
    d = stats.paired_t(real, full)
    out = {"root": root, "seeds": a.seeds, "real_only": real, "full": full, "diff": d, "stage_seconds": times,
           "minutes": (time.time() - t0) / 60,
           "synth": json.loads((work / "synthesize.json").read_text())["metrics"],
           "rl": {k: json.loads((work / "rl.json").read_text())[k]
                  for k in ("before", "after", "change", "se", "frechet", "diversity_ratio")},
           "utility": {k: v for k, v in json.loads((work / "utility.json").read_text()).items()
                       if k in ("diff", "verdict", "seeds", "folds", "pairs_needed")}}
    (work / "transfer.json").write_text(json.dumps(out, indent=1, default=float))
    print("| seed | real only | full | difference |\n| --- | --- | --- | --- |")
    for s, r, f in zip(a.seeds, real, full):
        print(f"| {s} | {100 * r:.1f} | {100 * f:.1f} | {100 * (f - r):+.1f} |")
    rl, u = out["rl"], out["utility"]
    print(f"RL (held-out, auditor): top-1 {rl['before']['top1']:.4f} → {rl['after']['top1']:.4f} "
          f"({rl['change']['top1']:+.4f} ± {rl['se']['top1']:.4f}); validation R_sem {rl['change']['r_sem_val']:+.4f} ± "
          f"{rl['se']['r_sem_val']:.4f}; diversity × {rl['diversity_ratio']:.3f}; Fréchet {rl['frechet']['before']:.3f} → "
          f"{rl['frechet']['after']:.3f}")
    print(f"utility check (held-out train identities): {u['verdict']}, {100 * u['diff']['mean']:+.1f} "
          f"[{100 * u['diff']['ci_low']:+.1f}, {100 * u['diff']['ci_high']:+.1f}] over {u['diff']['n']} pairs "
          f"({u.get('folds', 1)} fold{'s' if u.get('folds', 1) > 1 else ''} × {len(u['seeds'])} seeds)")
    print(f"full − real only: {100 * d['mean']:+.1f} mAP points [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}] "
          f"(95 % t-interval), p = {d['p_value']:.3f}, {len(a.seeds)} seeds; {out['minutes']:.1f} min")


if __name__ == "__main__":
    main()
