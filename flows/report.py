"""`report` stage: python -m flows.report [params.yaml]

reports/report.md (real-only vs real + synthetic, the audit, the generator checks) and
reports/embedding.png (real vs synthetic features of 10 identities, paper Fig. 4 style); both and
every metrics file go to MLflow. Prints where the results are.
"""
import json
import sys

from prefect import flow

from rgsyn import tracking
from rgsyn.config import load_params, to_dict
from tasks.report import write_report


@flow(name="report")
def report_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    with tracking.start_run(p.tracking, "report", to_dict(p.downstream)) as run:
        out = write_report(p)
        run.log({k: v for k, v in out["summary"].items() if isinstance(v, (int, float))})
        for f in out["files"]:
            run.log_artifact(f, "report")
    return out


def main():
    out = report_flow(*sys.argv[1:2])
    print(json.dumps(out["summary"], indent=1))
    print("results: " + ", ".join(out["files"]))


if __name__ == "__main__":
    main()
