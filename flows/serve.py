"""`make serve`: a `serve()` deployment of the whole pipeline (flows/pipeline.py) on a local Prefect server.

    python -m flows.serve [--params params.yaml] [--name rgsyn]

Open the UI (http://127.0.0.1:4200 with `make serve`), Deployments → pipeline/rgsyn → Run → Custom
run: every argument of `pipeline_flow` (dataset root, layout, steps of each stage, reward weights,
selection on/off, seeds, stages) can be changed for that run; the params it used are written to
runs/params-<flow run id>.yaml. The same works from code:
`prefect.deployments.run_deployment("pipeline/rgsyn", parameters={"rl_steps": 10})`.
"""
import argparse

from flows.pipeline import pipeline_flow


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml", help="the params file runs start from")
    ap.add_argument("--name", default="rgsyn", help="deployment name")
    args = ap.parse_args(argv)
    pipeline_flow.serve(name=args.name, parameters={"params_path": args.params},
                        description="rgsyn end to end: data → prior → reference → coldstart → rl → "
                                    "synthesize → downstream → report", tags=["rgsyn"])


if __name__ == "__main__":
    main()
