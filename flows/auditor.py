"""`auditor` stage (embedded default; frozen in dvc.yaml): python -m flows.auditor [params.yaml]

Trains the audit's independent matcher on the prior's general-domain identities (auditor.out_dir,
committed); retrain with `python -m flows.auditor`, then `dvc commit auditor`.
"""
import sys

from prefect import flow

from flows.common import run_stage
from rgsyn.config import load_params
from tasks.auditor import train_auditor


@flow(name="auditor")
def auditor_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    return run_stage(p, "auditor", p.auditor, lambda run: train_auditor(p, log=run.log),
                     devices=[p.auditor.train.device], numbers=lambda out: {"target_test": out["target_test"]})


def main(params_path: str = "params.yaml") -> dict:
    return auditor_flow(params_path)


if __name__ == "__main__":
    print(main(*sys.argv[1:2]))
