from prefect import task

from rgsyn.config import Params
from rgsyn.generator.coldstart import run_coldstart


@task(name="coldstart", tags=["train", "gpu"], retries=1)
def coldstart(p: Params, log=None) -> dict:
    """Zero-initialised label table for the target identities, backbone frozen; resumable."""
    return run_coldstart(p, log=log)
