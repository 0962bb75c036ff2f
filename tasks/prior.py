from prefect import task

from rgsyn.config import Params
from rgsyn.generator.prior import run_prior


@task(name="train-prior", tags=["train", "gpu"])
def train_prior(p: Params, log=None) -> dict:
    """General-domain pretraining of the default DiT (resumes from prior.ckpt_dir)."""
    return run_prior(p, log=log)
