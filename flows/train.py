"""The `reference` and `downstream` stages share one flow (rgsyn.downstream.run): the trainer over the
stage's `train.seeds`; the first seed's model is saved to the stage's out_dir."""
import json
from pathlib import Path

from prefect import flow

from flows.common import ensure_gpu_limit, stage_run
from rgsyn.config import load_params
from rgsyn.downstream.run import save_dirs
from tasks.train import train_distributed, train_seed, write_metrics


@flow(name="train")
def train_flow(stage: str, params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    sec = getattr(p, stage)
    with stage_run(p, stage, sec) as run:
        if p.compute.processes > 1:  # torchrun: one process per GPU (rgsyn/distributed.py)
            train_distributed(params_path, stage, p.compute.processes)
            out = json.loads(Path(sec.metrics).read_text())
        else:
            per_seed = [train_seed(p, stage, s, save=d or False) for s, d in zip(sec.train.seeds, save_dirs(p, stage))]
            out = write_metrics(p, stage, per_seed)
        run.log({f"test/{k}": v for k, v in out.items() if k.endswith(("_mean", "_std", "_gain"))})
        run.log_artifact(sec.metrics)
    return out


def main(stage: str, params_path: str = "params.yaml") -> dict:
    ensure_gpu_limit(getattr(load_params(params_path), stage).train.device)  # on CUDA: Prefect's `gpu` limit
    return train_flow.with_options(name=stage)(stage, params_path)
