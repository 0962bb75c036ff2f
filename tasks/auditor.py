from prefect import task
from prefect.cache_policies import NO_CACHE

from rgsyn.config import Params
from rgsyn.privacy.auditor import run_auditor


@task(name="train-auditor", tags=["train", "gpu"], cache_policy=NO_CACHE)
def train_auditor(p: Params, log=None) -> dict:
    """The audit's independent matcher, on the prior's general-domain identities only."""
    return run_auditor(p, log=log)
