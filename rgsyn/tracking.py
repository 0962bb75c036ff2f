"""MLflow, in one place. Library loops never import it: they take a `log(metrics, step)` callback.

Every run is tagged with what is needed to find it again from the other tools: the git sha, the DVC
experiment (`DVC_EXP_NAME` under `dvc exp run`, `workspace` under `dvc repro`, `outside-dvc` for a
run triggered from Prefect or Python), the pipeline stage, and the Prefect flow run that started the
whole run (a deployment run's id, not a subflow's) with the deployment's name.

The experiment is tagged as a model-training experiment; the MLflow UI itself opens in its GenAI
view unless the address asks for `?workflowType=machine_learning`, which `ui_url` (and `make ui`) does.
Metric names carry the sections the UI groups charts by, in alphabetical order, named so that the
curves come first: "loss/", "schedule/", "selection/", "test/" for the trainers; "reward/", "update/",
"vs_coldstart/" for RL. Values of one moment (test results) are logged at one step and show as bars.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import mlflow

from rgsyn.config import TrackingParams, flatten
from rgsyn.provenance import git_sha

EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # the UI's "Model training" view


def _prefect() -> dict:
    try:
        from prefect.runtime import deployment, flow_run

        fid = str(flow_run.id or "")
        return {"prefect_flow_run_id": str(flow_run.root_flow_run_id or fid) if fid else "",
                "prefect_subflow_run_id": fid, "prefect_deployment": str(deployment.name or "")}
    except Exception:  # noqa: BLE001 — no Prefect context: a plain library call
        return {"prefect_flow_run_id": "", "prefect_subflow_run_id": "", "prefect_deployment": ""}


def provenance(stage: str = "") -> dict:
    exp = os.environ.get("DVC_EXP_NAME") or ("workspace" if os.environ.get("DVC_STAGE") else "outside-dvc")
    return {"git_sha": git_sha(), "dvc_exp": exp, "dvc_stage": os.environ.get("DVC_STAGE") or stage, **_prefect()}


class Run:
    """A thin handle on an active MLflow run."""

    def __init__(self, run):
        self.id = run.info.run_id

    def log(self, metrics: dict, step: int | None = None) -> None:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step, run_id=self.id)

    def log_params(self, params: dict) -> None:
        flat = {k: str(v)[:500] for k, v in flatten(params).items()}
        mlflow.log_params(flat, run_id=self.id)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        mlflow.log_artifact(str(path), artifact_path=folder, run_id=self.id)


def experiment(cfg: TrackingParams) -> str:
    """The experiment's id, created as a model-training experiment when missing."""
    mlflow.set_tracking_uri(cfg.uri)
    exp = mlflow.get_experiment_by_name(cfg.experiment)
    if exp is None:
        return mlflow.create_experiment(cfg.experiment, tags=EXPERIMENT_KIND)
    if exp.tags.get("mlflow.experimentKind") != EXPERIMENT_KIND["mlflow.experimentKind"]:
        mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
    return exp.experiment_id


@contextmanager
def start_run(cfg: TrackingParams, name: str, params: dict | None = None, nested: bool = False, stage: str = ""):
    """Open an MLflow run named `name` (tags: the stage + provenance) and yield a `Run`."""
    exp_id = experiment(cfg)
    tags = {"stage": stage or name, **provenance(stage or name.split("-seed")[0])}
    with mlflow.start_run(run_name=name, experiment_id=exp_id, nested=nested, tags=tags) as r:
        run = Run(r)
        if params:
            run.log_params(params)
        yield run


def ui_url(cfg: TrackingParams, host: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI address that opens the experiment on its runs (not the GenAI overview)."""
    return f"{host}/#/experiments/{experiment(cfg)}?workflowType=machine_learning"


if __name__ == "__main__":  # python -m rgsyn.tracking [params.yaml]: where to look in the MLflow UI
    import sys

    from rgsyn.config import load_params

    print(ui_url(load_params(sys.argv[1] if len(sys.argv) > 1 else "params.yaml").tracking))
