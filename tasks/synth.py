from prefect import task
from prefect.cache_policies import NO_CACHE

from rgsyn.config import Params
from rgsyn.synth import run


@task(name="synth-plan", cache_policy=NO_CACHE)
def plan(p: Params) -> run.Plan:
    """Shard layout, synthesis id and provenance, computed once."""
    return run.make_plan(p)


@task(name="synth-shard", tags=["synth", "gpu"], retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def shard(p: Params, plan: run.Plan, index: int, written_by: dict) -> dict:
    """One shard file (idempotent: a finished shard of this synthesis is skipped); retries from synth.retries."""
    return run.write_shard(p, plan, index, written_by)


@task(name="synth-finalize", cache_policy=NO_CACHE)
def finalize(p: Params, plan: run.Plan, entries: list[dict], written_by: dict) -> dict:
    """_manifest.json + the run's counts and rates."""
    return run.finalize(p, plan, entries, written_by)
