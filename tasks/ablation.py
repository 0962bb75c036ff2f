from prefect import task
from prefect.cache_policies import NO_CACHE

from rgsyn import ablation


@task(name="ablation-generator", tags=["generate", "gpu"], cache_policy=NO_CACHE)
def make_generator(params_path: str, gen: str) -> str:
    """One rung's generator (RL on its reward weights) and its shards; returns the shard folder."""
    return ablation.make_generator(params_path, gen)


@task(name="ablation-train", tags=["train", "gpu"], cache_policy=NO_CACHE)
def train_row(params_path: str, row: str, seed: int, shards: str | None, threads: int = 1) -> dict:
    """One rung, one seed of the downstream trainer."""
    return ablation.train_row(params_path, row, seed, shards, threads)
