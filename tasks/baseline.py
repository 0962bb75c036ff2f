from prefect import task

from rgsyn.config import Params
from rgsyn.downstream import baseline


@task(name="train-baseline-seed", tags=["train"])
def train_seed(p: Params, seed: int, save_reference: bool) -> dict:
    """One real-only re-id run; the first seed's model is saved as the reference encoder."""
    return baseline.train_seed(p, seed, save_reference)


@task(name="write-baseline-metrics")
def write_metrics(p: Params, per_seed: list[dict]) -> dict:
    return baseline.write_metrics(p, per_seed)
