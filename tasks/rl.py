from prefect import task

from rgsyn.config import Params
from rgsyn.rl.loop import run_rl


@task(name="rl-finetune", tags=["train", "gpu"])
def rl_finetune(p: Params, log=None, artifact=None) -> dict:
    """DPOK on the multi-objective reward; writes the adapter checkpoint (rl.out_dir)."""
    return run_rl(p, log=log, artifact=artifact)
