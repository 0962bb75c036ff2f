"""`coldstart` stage: python -m flows.coldstart [params.yaml]

Writes the target label table (coldstart.out_dir), coldstart.metrics (identity consistency
before/after) and coldstart.grid (one row per identity: real | generated).
"""
import sys

from prefect import flow

from flows.common import ensure_gpu_limit, log_numbers, stage_run, write_json
from rgsyn.config import load_params
from tasks.generator import coldstart


@flow(name="coldstart")
def coldstart_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    with stage_run(p, "coldstart", p.coldstart) as run:
        out = coldstart(p, log=run.log)
        log_numbers(run, {"before": out["before"], "after": out["after"]}, "consistency")
        run.log_artifact(out["grid"])
        write_json(p.coldstart.metrics, {k: out[k] for k in ("before", "after", "judge", "train_seconds")})
    return out


def main(params_path: str = "params.yaml") -> dict:
    ensure_gpu_limit(load_params(params_path).coldstart.device)  # on CUDA: Prefect's `gpu` tag limit
    return coldstart_flow(params_path)


if __name__ == "__main__":
    print(main(*sys.argv[1:2]))
