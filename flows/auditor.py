"""`auditor` stage (embedded default; frozen in dvc.yaml): python -m flows.auditor [params.yaml]

Trains the audit's independent matcher on the prior's general-domain identities (auditor.out_dir,
committed); `dvc repro -f auditor` retrains it.
"""
import sys

from prefect import flow

from flows.common import stage_run
from rgsyn.config import flatten, load_params
from tasks.auditor import train_auditor


@flow(name="auditor")
def auditor_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    with stage_run(p, "auditor", p.auditor) as run:
        out = train_auditor(p, log=run.log)
        run.log(flatten({"target_test": out["target_test"]}, sep="/"))
    return out


def main(params_path: str = "params.yaml") -> dict:
    return auditor_flow(params_path)


if __name__ == "__main__":
    print(main(*sys.argv[1:2]))
