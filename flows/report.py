"""`report` stage: python -m flows.report [params.yaml]

report.markdown (real only vs real + synthetic, the generator's checks, the audit) and
report.embedding (real vs synthetic features of 10 identities, paper Fig. 4 style); both and every
metrics file go to MLflow. Prints where the results are.
"""
import sys

from prefect import flow

from flows.common import run_stage
from rgsyn.config import load_params
from tasks.report import write_report


@flow(name="report")
def report_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    return run_stage(p, "report", p.report, lambda run: write_report(p),
                     numbers=lambda out: {"summary": out["summary"]}, files=lambda out: out["files"], folder="report")


def main(params_path: str = "params.yaml") -> dict:
    return report_flow(params_path)


if __name__ == "__main__":
    out = main(*sys.argv[1:2])
    print(out["summary"])
    print("results: " + ", ".join(out["files"]))
