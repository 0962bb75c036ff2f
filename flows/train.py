"""The `reference` and `downstream` stages share one flow (rgsyn.downstream.run): the trainer over the
stage's `train.seeds`; the first seed's model is saved to the stage's out_dir."""
import json
from pathlib import Path

from prefect import flow

from flows.common import run_stage
from rgsyn.config import load_params
from rgsyn.downstream.run import save_dirs
from tasks.train import train_distributed, train_seed, write_metrics

TEST = ("_mean", "_std", "_gain")  # the metrics file's figures that the run logs under test/


@flow(name="train")
def train_flow(stage: str, params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    sec = getattr(p, stage)

    def work(run) -> dict:
        if p.compute.processes > 1:  # torchrun: one process per GPU (rgsyn/distributed.py)
            train_distributed(params_path, stage, p.compute.processes)
            return json.loads(Path(sec.metrics).read_text())
        per_seed = [train_seed(p, stage, s, save=d or False) for s, d in zip(sec.train.seeds, save_dirs(p, stage))]
        return write_metrics(p, stage, per_seed)

    return run_stage(p, stage, sec, work, devices=[sec.train.device],
                     numbers=lambda out: {"test": {k: v for k, v in out.items() if k.endswith(TEST)}},
                     files=lambda out: [sec.metrics])


def main(stage: str, params_path: str = "params.yaml") -> dict:
    return train_flow.with_options(name=stage)(stage, params_path)
