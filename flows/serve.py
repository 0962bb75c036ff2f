"""`make serve`: a `serve()` deployment of the whole pipeline (flows/pipeline.py) on a local Prefect server.

    python -m flows.serve [--params params.yaml] [--name rgsyn]

Open the UI (http://127.0.0.1:4200 with `make serve`), Deployments → pipeline/rgsyn → Run → Custom
run: every argument of `pipeline_flow` is there with its description, filled in with the value the
params file holds now, and `stages` is a choice of the pipeline's stage names. The params a run used
are written to runs/params-<flow run id>.yaml. The same from code:
`prefect.deployments.run_deployment("pipeline/rgsyn", parameters={"rl_steps": 10})`.
"""
import argparse

from flows.pipeline import STAGES, pipeline_flow
from rgsyn.config import load_params


def defaults(params_path: str) -> dict:
    """The deployment's parameter defaults: what the params file holds, so the form shows the values a
    run will use (an argument left as it is overrides nothing)."""
    p = load_params(params_path)
    return {"params_path": params_path, "dataset_root": p.data.root, "layout": p.data.layout,
            "pretrained": p.coldstart.pretrained, "coldstart_steps": p.coldstart.steps, "rl_steps": p.rl.steps,
            "synth_per_id": p.synth.per_id, "downstream_epochs": p.downstream.train.epochs,
            "reward_weights": list(p.rl.weights), "selection": p.downstream.selection.mode,
            "selection_ratio": p.downstream.selection.ratio, "seeds": list(p.downstream.train.seeds),
            "stages": list(STAGES)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml", help="the params file runs start from")
    ap.add_argument("--name", default="rgsyn", help="deployment name")
    args = ap.parse_args(argv)
    pipeline_flow.serve(name=args.name, parameters=defaults(args.params), tags=["rgsyn"],
                        description="rgsyn end to end: " + " → ".join(STAGES))


if __name__ == "__main__":
    main()
