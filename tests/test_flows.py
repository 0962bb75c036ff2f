"""One real end-to-end run of the flows (data -> reference) on a micro config, through Prefect and MLflow."""
import json

import mlflow

from rgsyn.config import load_params
from tests.conftest import micro_params


def test_data_and_reference_flows_end_to_end(tmp_path, prefect_harness):
    from flows.data import data_flow
    from flows.reference import main as reference_flow

    params = micro_params(tmp_path)
    summary = data_flow(str(params))
    assert summary["train"]["ids"] == 20 and summary["query"]["ids"] == 8
    out = reference_flow(str(params))
    p = load_params(params)
    metrics = json.loads(open(p.reference.metrics).read())
    assert metrics["n_seeds"] == 2 and set(metrics) >= {"mAP_mean", "mAP_std", "rank1_mean", "rank1_std"}
    assert metrics == json.loads(json.dumps(out))
    assert (tmp_path / "checkpoints/reference/encoder.safetensors").exists()

    mlflow.set_tracking_uri(p.tracking.uri)
    runs = mlflow.search_runs(experiment_names=[p.tracking.experiment], output_format="list")
    names = {r.info.run_name for r in runs}
    assert {"reference", "reference-seed0", "reference-seed1"} <= names
    parent = next(r for r in runs if r.info.run_name == "reference")
    assert parent.data.tags["prefect_flow_run_id"] and parent.data.tags["git_sha"]
    assert "test/mAP_mean" in parent.data.metrics
    child = next(r for r in runs if r.info.run_name == "reference-seed0")
    history = mlflow.MlflowClient().get_metric_history(child.info.run_id, "loss/loss")
    assert len(history) == p.reference.train.epochs
