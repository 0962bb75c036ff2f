"""`auditor` stage (embedded default; frozen in dvc.yaml): python -m flows.auditor [params.yaml]

Trains the audit's independent matcher on the prior's general-domain identities (auditor.out_dir,
committed); retrain with `python -m flows.auditor`, then `dvc commit auditor`.
"""
import sys

from prefect import flow

from flows.common import ensure_gpu_limit, log_numbers, stage_run
from rgsyn.config import load_params
from tasks.auditor import train_auditor


@flow(name="auditor")
def auditor_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    with stage_run(p, "auditor", p.auditor) as run:
        out = train_auditor(p, log=run.log)
        log_numbers(run, out["target_test"], "target_test")
    return out


def main(params_path: str = "params.yaml") -> dict:
    ensure_gpu_limit(load_params(params_path).auditor.train.device)  # on CUDA: Prefect's `gpu` tag limit
    return auditor_flow(params_path)


if __name__ == "__main__":
    print(main(*sys.argv[1:2]))
