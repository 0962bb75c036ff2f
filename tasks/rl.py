from prefect import task

from rgsyn.config import Params
from rgsyn.rl.loop import run_rl


@task(name="rl-finetune", tags=["train", "gpu"])
def rl_finetune(p: Params, log=None, artifact=None) -> dict:
    """DPOK on the multi-objective reward; writes the adapter checkpoint (rl.out_dir)."""
    return run_rl(p, log=log, artifact=artifact)


@task(name="rl-distributed", tags=["train", "gpu"])
def rl_distributed(params_path: str, processes: int) -> None:
    """RL under torchrun (compute.processes processes); the first writes rl.out_dir and rl.metrics."""
    from rgsyn.distributed import launch

    launch("rgsyn.rl.loop", [params_path], processes)
