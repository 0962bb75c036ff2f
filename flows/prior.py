"""`prior` stage (embedded default only; frozen in dvc.yaml): python -m flows.prior [params.yaml]

Frozen in dvc.yaml: retrain with `python -m flows.prior`, then `dvc commit prior` (the embedded default's
20,000 steps: about 2.5 hours on 2 CPU cores, resumable from prior.ckpt_dir; minutes on a GPU).
"""
import sys

from prefect import flow

from flows.common import run_stage
from rgsyn.config import load_params
from tasks.prior import train_prior


@flow(name="prior")
def prior_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    return run_stage(p, "prior", p.prior, lambda run: train_prior(p, log=run.log), devices=[p.prior.device],
                     files=lambda out: [out["grid"]])


def main(params_path: str = "params.yaml") -> dict:
    return prior_flow(params_path)


if __name__ == "__main__":
    print(main(*sys.argv[1:2]))
