from prefect import task
from prefect.cache_policies import NO_CACHE

from rgsyn.config import Params
from rgsyn.downstream import run


@task(name="train-seed", tags=["train", "gpu"], cache_policy=NO_CACHE)
def train_seed(p: Params, stage: str, seed: int, save: bool | str) -> dict:
    """One seed of the reference (real only) or downstream (real + synthetic) trainer."""
    return run.train_seed(p, stage, seed, save)


@task(name="write-metrics", cache_policy=NO_CACHE)
def write_metrics(p: Params, stage: str, per_seed: list[dict]) -> dict:
    """The stage's metrics file: mean ± std over seeds (+ the real-only comparison for downstream)."""
    return run.write_metrics(p, stage, per_seed)


@task(name="train-distributed", tags=["train", "gpu"], cache_policy=NO_CACHE)
def train_distributed(params_path: str, stage: str, processes: int) -> None:
    """Every seed of the stage under torchrun (compute.processes processes); the first writes the metrics."""
    from rgsyn.distributed import launch

    launch("rgsyn.downstream.run", [stage, params_path], processes)
