import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def micro_params(tmp: Path, **over) -> Path:
    """params.yaml of the repo, shrunk to seconds of CPU and pointed into `tmp`."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"].update(root=str(tmp / "data/embedded"), index=str(tmp / "data/index.parquet"))
    raw["data"]["embedded"].update(num_train_ids=20, num_test_ids=8, num_distractors=4, num_cameras=3,
                                   test_images_per_id=4)
    raw["reference"].update(out_dir=str(tmp / "checkpoints/reference"), metrics=str(tmp / "metrics/reference.json"))
    raw["reference"]["train"].update(epochs=2, p=4, k=2, warmup_epochs=1, seeds=[0, 1], device="cpu")
    raw["downstream"].update(out_dir=str(tmp / "checkpoints/downstream"), metrics=str(tmp / "metrics/downstream.json"))
    raw["downstream"]["train"].update(epochs=2, p=4, k=2, warmup_epochs=1, seeds=[0], device="cpu")
    raw["downstream"]["mix"].update(synthetic=str(tmp / "data/synthetic"))
    raw["ablation"].update(work_dir=str(tmp / "checkpoints/ablation"), report=str(tmp / "reports/ablation"),
                           seeds=[0], workers=1)
    raw["tracking"].update(uri=f"sqlite:///{tmp / 'mlflow.db'}")
    for key, value in over.items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="session")
def prefect_harness():
    """One ephemeral Prefect server for the whole session (each costs seconds to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
