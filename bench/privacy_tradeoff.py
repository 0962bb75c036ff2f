"""Identity consistency against membership signal: the generator at several guidance scales and RL
strengths, each through RL, synthesis and the privacy audit exactly as the pipeline runs them, its
outputs under --work (the pipeline's own are untouched).

For each `guidance:rl_steps[:spacing]` of --grid: the `rl` stage with `rl.steps` updates (0: the cold start as it
is; `rl.eval_per_id` held-out samples per identity, --eval-per-id), the `synthesize` stage from that
generator and the `privacy` stage. Prints per row the held-out top-1 (the auditor) before and after RL
with the paired s.e., the audit's accepted count and near-copy rate, and the membership attacks' AUC
with its bootstrap interval: `shard` reads only the released shards, `loss` the generator's weights.

python bench/privacy_tradeoff.py [--params face/params.yaml] [--grid 2:25,2:0,1.5:25,1.5:0]
    [--eval-per-id 8] [--work checkpoints/tradeoff] [--set rl.lr=0.01 ...]
Needs the pipeline's data, reference and cold-start outputs (make run / make run-face).
"""
import argparse
import json
from pathlib import Path

from rgsyn.config import load_params, parse_overrides


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--grid", default="2:25,2:0,1.5:25,1.5:0")
    ap.add_argument("--eval-per-id", type=int, default=8)
    ap.add_argument("--work", default="checkpoints/tradeoff")
    ap.add_argument("--set", nargs="*", default=[], help="key=value params overrides for every row")
    a = ap.parse_args()
    from rgsyn.privacy.run import run_privacy
    from rgsyn.rl.loop import run_rl
    from rgsyn.synth.run import synthesize

    rows = []
    params = Path(a.work) / "params.yaml"  # the file as it is now, whatever edits come during the run
    params.parent.mkdir(parents=True, exist_ok=True)
    params.write_text(Path(a.params).read_text())
    for spec in a.grid.split(","):
        g, steps, *spacing = spec.split(":")
        work = Path(a.work) / f"g{g}_rl{steps}{''.join('_' + x for x in spacing)}"
        o = {**parse_overrides(a.set), "sampler.guidance": float(g), "rl.steps": int(steps),
             **({"sampler.spacing": spacing[0]} if spacing else {}),
             "rl.eval_per_id": a.eval_per_id, "rl.out_dir": str(work / "rl"), "rl.metrics": str(work / "rl.json"),
             "synth.checkpoint": str(work / "rl"), "synth.out_dir": str(work / "synthetic"),
             "synth.metrics": str(work / "synth.json"), "audit.novel_out_dir": str(work / "synthetic-novel"),
             "audit.report": str(work / "privacy"), "rl.grid_every": 0}
        p = load_params(params, o)
        rl = run_rl(p, progress=False)
        work.joinpath("rl.json").write_text(json.dumps(rl, indent=1, default=float))
        synth = synthesize(p, progress=False)["metrics"]
        priv = run_privacy(p, progress=False)["report"]
        mia = priv["mia"]
        ci = lambda m: f"{m['auc']:.3f} [{m['auc_ci'][0]:.3f}, {m['auc_ci'][1]:.3f}]"
        top1 = f"{rl['before']['top1']:.3f} → {rl['after']['top1']:.3f} ({rl['change']['top1']:+.3f} ± {rl['se']['top1']:.3f})"
        rows.append(f"| {g} | {spacing[0] if spacing else p.sampler.spacing} | {steps} | {top1} | {synth['accepted']} | "
                    f"{priv['copy']['rate']:.3f} | {ci(mia['shard'])} | {ci(mia['loss'])} |")
        print(rows[-1], flush=True)
    print(f"\n{a.params}, held-out {a.eval_per_id} samples per identity\n")
    print("| guidance | spacing | RL updates | top-1 (auditor) before → after (± paired s.e.) | accepted | near-copy "
          "rate | shard MIA AUC [95 %] | loss MIA AUC [95 %] |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
