"""`prior` stage (embedded default only; frozen in dvc.yaml): python -m flows.prior [params.yaml]

Retrain with `dvc repro -f prior` (about 2 h on 2 CPU cores, minutes on a GPU).
"""
import sys

from prefect import flow

from rgsyn import tracking
from rgsyn.config import load_params, to_dict
from tasks.generator import train_prior


@flow(name="prior")
def prior_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    with tracking.start_run(p.tracking, "prior", to_dict(p.prior)) as run:
        out = train_prior(p, log=run.log)
        run.log_artifact(out["grid"])
    return out


if __name__ == "__main__":
    print(prior_flow(*sys.argv[1:2]))
