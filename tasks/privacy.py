from prefect import task
from prefect.cache_policies import NO_CACHE

from rgsyn.config import Params
from rgsyn.privacy.run import run_privacy


@task(name="privacy-audit", tags=["generate", "gpu"], cache_policy=NO_CACHE)
def audit(p: Params) -> dict:
    """Near-copies + positive control, membership inference, novel identities -> audit.report."""
    return run_privacy(p)
