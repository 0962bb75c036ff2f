from prefect import task

from rgsyn.config import Params
from rgsyn.generator.coldstart import run_coldstart
from rgsyn.generator.prior import run_prior


@task(name="train-prior", tags=["train"])
def train_prior(p: Params, log=None) -> dict:
    """General-domain pretraining of the default DiT (resumes from prior.ckpt_dir)."""
    return run_prior(p, log=log)


@task(name="coldstart", tags=["train"], retries=1)
def coldstart(p: Params, log=None) -> dict:
    """Zero-initialised label table for the target identities, backbone frozen; resumable."""
    return run_coldstart(p, log=log)
