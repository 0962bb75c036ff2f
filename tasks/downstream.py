from prefect import task
from prefect.cache_policies import NO_CACHE

from rgsyn.config import Params
from rgsyn.downstream import mixed


@task(name="train-downstream-seed", tags=["train"], cache_policy=NO_CACHE)
def train_seed(p: Params, seed: int, save: bool, name: str = "downstream") -> dict:
    """One real + synthetic re-id run with dynamic sample selection; the first seed's model is saved."""
    return mixed.train_seed(p, seed, save, name)


@task(name="write-downstream-metrics", cache_policy=NO_CACHE)
def write_metrics(p: Params, per_seed: list[dict]) -> dict:
    return mixed.write_metrics(p, per_seed)
