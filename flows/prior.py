"""`prior` stage (embedded default only; frozen in dvc.yaml): python -m flows.prior [params.yaml]

Frozen in dvc.yaml: retrain with `python -m flows.prior`, then `dvc commit prior` (about 75 minutes
on 2 CPU cores, minutes on a GPU).
"""
import sys

from prefect import flow

from flows.common import ensure_gpu_limit, stage_run
from rgsyn.config import load_params
from tasks.prior import train_prior


@flow(name="prior")
def prior_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    with stage_run(p, "prior", p.prior) as run:
        out = train_prior(p, log=run.log)
        run.log_artifact(out["grid"])
    return out


def main(params_path: str = "params.yaml") -> dict:
    ensure_gpu_limit(load_params(params_path).prior.device)  # on CUDA: Prefect's `gpu` tag limit
    return prior_flow(params_path)


if __name__ == "__main__":
    print(main(*sys.argv[1:2]))
