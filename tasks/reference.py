from prefect import task

from rgsyn.config import Params
from rgsyn.downstream import reference


@task(name="train-reference-seed", tags=["train"])
def train_seed(p: Params, seed: int, save_reference: bool) -> dict:
    """One real-only re-id run; the first seed's model is saved as the reference encoder."""
    return reference.train_seed(p, seed, save_reference)


@task(name="write-reference-metrics")
def write_metrics(p: Params, per_seed: list[dict]) -> dict:
    return reference.write_metrics(p.reference.metrics, per_seed)
