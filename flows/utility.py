"""`utility` stage: python -m flows.utility [params.yaml]

The utility check (rgsyn/downstream/utility.py): real only vs real + synthetic on held-out train
identities, every fold of `utility.folds` × every seed of `utility.seeds`, `utility.workers` trainings
at once; writes utility.metrics (the paired difference over all pairs, its interval and the verdict the
downstream stage and the report read).
"""
import sys

from prefect import flow

from flows.common import run_stage, task_runner
from rgsyn.config import load_params
from rgsyn.downstream.utility import ARMS, datasets, summarize
from tasks.utility import train_arm


@flow(name="utility")
def utility_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)

    def work(run) -> dict:
        datasets(p, write=True)  # every fold's face pairs, once, before the trainings read them
        threads = 1 if p.utility.workers > 1 else 0  # one per worker process when they share the cores
        units = [(f, s) for f in range(p.utility.folds) for s in p.utility.seeds]
        jobs = {(arm, f, s): train_arm.submit(params_path, arm, f, s, threads) for f, s in units for arm in ARMS}
        per_pair = [{"fold": f, "seed": s, **{arm: jobs[(arm, f, s)].result() for arm in ARMS}} for f, s in units]
        return summarize(p, per_pair)

    return run_stage(p, "utility", p.utility, work, devices=[p.downstream.train.device],
                     numbers=lambda out: {"utility": {k: v for k, v in out["diff"].items() if isinstance(v, float)}},
                     files=lambda out: [p.utility.metrics], metrics_file=p.utility.metrics)


def main(params_path: str = "params.yaml") -> dict:
    return utility_flow.with_options(task_runner=task_runner(load_params(params_path).utility.workers))(params_path)


if __name__ == "__main__":
    out = main(*sys.argv[1:2])
    d = out["diff"]
    print(f"utility: {out['verdict']}; {out['metric']} full − real only {100 * d['mean']:+.1f} "
          f"[{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}] over {d['n']} pairs ({out['folds']} folds × "
          f"{len(out['seeds'])} seeds); {out['power']}")
