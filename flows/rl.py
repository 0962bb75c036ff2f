"""`rl` stage: python -m flows.rl [params.yaml]

Writes rl.out_dir (adapter + config + a before/after grid), the memory bank and rl.metrics (held-out
rewards, identity consistency, diversity and fidelity before/after, with paired s.e.).
"""
import json
import sys
from pathlib import Path

from prefect import flow

from flows.common import run_stage, write_json
from rgsyn.config import load_params
from tasks.rl import rl_distributed, rl_finetune

VS_COLDSTART = ("before", "after", "change", "se", "frechet", "diversity_ratio")


@flow(name="rl")
def rl_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)

    def work(run) -> dict:
        if p.compute.processes > 1:  # torchrun: one process per GPU (rgsyn/distributed.py) writes rl.metrics
            rl_distributed(params_path, p.compute.processes)
            return json.loads(Path(p.rl.metrics).read_text())
        out = rl_finetune(p, log=run.log, artifact=lambda f: run.log_artifact(f, "grids"))
        write_json(p.rl.metrics, out)
        return out

    return run_stage(p, "rl", p.rl, work, devices=[p.rl.device],
                     numbers=lambda out: {"vs_coldstart": {k: out[k] for k in VS_COLDSTART}})


def main(params_path: str = "params.yaml") -> dict:
    return rl_flow(params_path)


if __name__ == "__main__":
    print(main(*sys.argv[1:2]))
