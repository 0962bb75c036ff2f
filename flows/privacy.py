"""`privacy` stage: python -m flows.privacy [params.yaml]

Near-copies with their positive control, membership inference and novel identities -> audit.report
(.json, .md, .png), all three also MLflow artifacts; the novel shards go to audit.novel_out_dir.
"""
import sys

from prefect import flow

from flows.common import ensure_gpu_limit, log_numbers, stage_run
from rgsyn.config import load_params
from tasks.privacy import audit


@flow(name="privacy")
def privacy_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    with stage_run(p, "privacy", p.audit) as run:
        out = audit(p)
        log_numbers(run, out["report"], "privacy")
        for f in out["files"]:
            run.log_artifact(f, "privacy")
    return out


def main(params_path: str = "params.yaml") -> dict:
    ensure_gpu_limit(load_params(params_path).synth.device)  # on CUDA: Prefect's `gpu` tag limit
    return privacy_flow(params_path)


if __name__ == "__main__":
    print(main(*sys.argv[1:2])["files"])
