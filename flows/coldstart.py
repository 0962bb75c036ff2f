"""`coldstart` stage: python -m flows.coldstart [params.yaml]

Writes the target label table (checkpoints/coldstart), metrics/coldstart.json (identity consistency
before/after) and reports/coldstart_samples.png (one row per identity: real | generated).
"""
import json
import sys
from pathlib import Path

from prefect import flow

from rgsyn import tracking
from rgsyn.config import flatten, load_params, to_dict
from tasks.generator import coldstart


@flow(name="coldstart")
def coldstart_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    with tracking.start_run(p.tracking, "coldstart", to_dict(p.coldstart)) as run:
        out = coldstart(p, log=run.log)
        run.log({k: v for k, v in flatten({"before": out["before"], "after": out["after"]}).items()})
        run.log_artifact(out["grid"])
        metrics = Path("metrics/coldstart.json")
        metrics.parent.mkdir(exist_ok=True)
        metrics.write_text(json.dumps({k: out[k] for k in ("before", "after", "train_seconds")}, indent=1))
    return out


if __name__ == "__main__":
    print(coldstart_flow(*sys.argv[1:2]))
