"""`coldstart` stage: python -m flows.coldstart [params.yaml]

Writes the target label table (coldstart.out_dir), coldstart.metrics (identity consistency and
fidelity against the truth, before/after: rgsyn.eval.fidelity) and coldstart.grid (one row per identity: real | generated).
"""
import sys

from prefect import flow

from flows.common import run_stage
from rgsyn.config import load_params
from tasks.generator import coldstart


@flow(name="coldstart")
def coldstart_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    return run_stage(p, "coldstart", p.coldstart, lambda run: coldstart(p, log=run.log), devices=[p.coldstart.device],
                     numbers=lambda out: {"consistency": {k: out[k] for k in ("before", "after")}},
                     files=lambda out: [out["grid"]], metrics_file=p.coldstart.metrics,
                     metrics=lambda out: {k: out[k] for k in ("before", "after", "judge", "fidelity", "train_seconds")})


def main(params_path: str = "params.yaml") -> dict:
    return coldstart_flow(params_path)


if __name__ == "__main__":
    print(main(*sys.argv[1:2]))
