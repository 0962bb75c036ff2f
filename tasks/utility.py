from prefect import task
from prefect.cache_policies import NO_CACHE

from rgsyn.config import load_params
from rgsyn.downstream import utility


@task(name="utility-train", tags=["train", "gpu"], cache_policy=NO_CACHE)
def train_arm(params_path: str, arm: str, fold: int, seed: int, threads: int = 0) -> dict:
    """One arm (real only | full), one fold, one seed of the utility check (threads 0: the process's count)."""
    return utility.train_arm(load_params(params_path), arm, fold, seed, threads)
