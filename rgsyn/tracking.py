"""MLflow, in one place. Library loops never import it: they take a `log(metrics, step)` callback.

Every run is tagged with what is needed to find it again from the other tools: the git sha, the DVC
experiment name (`DVC_EXP_NAME`, set by `dvc exp run`) and the Prefect flow-run id when one is active.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import mlflow

from rgsyn.config import TrackingParams, flatten


def _prefect_flow_run_id() -> str:
    try:
        from prefect.runtime import flow_run

        return str(flow_run.id or "")
    except Exception:  # noqa: BLE001 — no Prefect context: a plain library call
        return ""


def provenance() -> dict:
    from rgsyn.encoder import git_sha

    # `dvc exp run` names the experiment; a plain `dvc repro` runs in the workspace; "" = outside DVC
    exp = os.environ.get("DVC_EXP_NAME") or ("workspace" if os.environ.get("DVC_STAGE") else "")
    return {"git_sha": git_sha(), "dvc_exp": exp, "dvc_stage": os.environ.get("DVC_STAGE", ""),
            "prefect_flow_run_id": _prefect_flow_run_id()}


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

    def log_dict(self, d: dict, name: str) -> None:
        mlflow.log_dict(d, name, run_id=self.id)


@contextmanager
def start_run(cfg: TrackingParams, name: str, params: dict | None = None, nested: bool = False):
    """Open an MLflow run named `name` (tags: provenance) and yield a `Run`."""
    mlflow.set_tracking_uri(cfg.uri)
    mlflow.set_experiment(cfg.experiment)
    with mlflow.start_run(run_name=name, nested=nested, tags={"stage": name, **provenance()}) as r:
        run = Run(r)
        if params:
            run.log_params(params)
        yield run
