"""`rl` stage: python -m flows.rl [params.yaml]

Writes rl.out_dir (adapter + config + a before/after grid), the memory bank and rl.metrics (held-out
rewards, identity consistency, diversity and fidelity before/after, with paired s.e.).
"""
import json
import sys
from pathlib import Path

from prefect import flow

from flows.common import ensure_gpu_limit, log_numbers, stage_run, write_json
from rgsyn.config import load_params
from tasks.rl import rl_distributed, rl_finetune


@flow(name="rl")
def rl_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    with stage_run(p, "rl", p.rl) as run:
        if p.compute.processes > 1:  # torchrun: one process per GPU (rgsyn/distributed.py)
            rl_distributed(params_path, p.compute.processes)
            out = json.loads(Path(p.rl.metrics).read_text())
        else:
            out = rl_finetune(p, log=run.log, artifact=lambda f: run.log_artifact(f, "grids"))
            write_json(p.rl.metrics, out)
        log_numbers(run, {k: out[k] for k in ("before", "after", "change", "se", "frechet", "diversity_ratio")},
                    "vs_coldstart")
    return out


def main(params_path: str = "params.yaml") -> dict:
    ensure_gpu_limit(load_params(params_path).rl.device)  # on CUDA: Prefect's `gpu` tag limit
    return rl_flow(params_path)


if __name__ == "__main__":
    print(main(*sys.argv[1:2]))
