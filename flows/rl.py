"""`rl` stage: python -m flows.rl [params.yaml]

Writes checkpoints/rl (adapter + config) and metrics/rl.json (rewards before/after on held-out noise).
"""
import json
import sys
from pathlib import Path

from prefect import flow

from rgsyn import tracking
from rgsyn.config import flatten, load_params, to_dict
from tasks.rl import rl_finetune


@flow(name="rl")
def rl_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    with tracking.start_run(p.tracking, "rl", to_dict(p.rl)) as run:
        out = rl_finetune(p, log=run.log, artifact=lambda f: run.log_artifact(f, "grids"))
        run.log(flatten({"eval": {k: out[k] for k in ("before", "after")}}))
        Path("metrics").mkdir(exist_ok=True)
        Path("metrics/rl.json").write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    print(rl_flow(*sys.argv[1:2]))
