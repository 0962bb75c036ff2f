"""`privacy` stage: python -m flows.privacy [params.yaml]

Near-copies with their positive control, membership inference and novel identities -> audit.report
(.json, .md, .png) and the dataset cards of both releases (synth.out_dir/README.md and
audit.novel_out_dir/README.md), all also MLflow artifacts; the novel shards go to audit.novel_out_dir.
"""
import sys

from prefect import flow

from flows.common import run_stage
from rgsyn.config import load_params
from tasks.privacy import audit


@flow(name="privacy")
def privacy_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    return run_stage(p, "privacy", p.audit, lambda run: audit(p), devices=[p.synth.device],
                     numbers=lambda out: {"privacy": out["report"]}, files=lambda out: out["files"], folder="privacy")


def main(params_path: str = "params.yaml") -> dict:
    return privacy_flow(params_path)


if __name__ == "__main__":
    print(main(*sys.argv[1:2])["files"])
