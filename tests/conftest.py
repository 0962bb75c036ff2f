import importlib.util
import os
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_bench(name: str):
    """bench/<name>.py as a module (bench/ is a folder of scripts, not a package)."""
    sys.path.insert(0, str(ROOT / "bench"))  # gpu_pipeline imports gpu as its sibling
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(ROOT / "bench"))


# the generator stack (prior -> cold start -> RL -> synthesis) in seconds of CPU
MICRO_GEN = {"prior.num_classes": 6, "prior.per_class": 2, "prior.num_cameras": 3, "prior.steps": 4,
             "prior.batch": 4, "prior.ckpt_every": 2, "prior.sample_steps": 2, "prior.warmup": 1,
             "prior.model.num_layers": 1, "prior.model.num_attention_heads": 2, "prior.model.attention_head_dim": 8,
             "prior.device": "cpu", "sampler.steps": 3, "coldstart.steps": 4, "coldstart.batch": 4,
             "coldstart.ckpt_every": 2, "coldstart.eval_per_id": 1, "coldstart.grid_ids": 2, "coldstart.warmup": 1,
             "coldstart.device": "cpu", "reference.train.seeds": [0, 1], "rl.steps": 2, "rl.ids_per_step": 2,
             "rl.group_size": 4, "rl.eval_per_id": 2, "rl.lora_rank": 2, "rl.grid_every": 1, "rl.device": "cpu",
             "synth.per_id": 3, "synth.ids_per_shard": 2, "synth.batch": 4, "synth.sem_floor": 0.5,
             "synth.device": "cpu"}


def micro_params(tmp: Path, **over) -> Path:
    """params.yaml of the repo, shrunk to seconds of CPU and pointed into `tmp`."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"].update(root=str(tmp / "data/embedded"), index=str(tmp / "data/index.parquet"))
    raw["data"]["embedded"].update(num_train_ids=20, num_test_ids=8, num_distractors=4, num_cameras=3,
                                   test_images_per_id=4)
    raw["reference"].update(out_dir=str(tmp / "checkpoints/reference"), val_out_dir=str(tmp / "checkpoints/reference-val"),
                            metrics=str(tmp / "metrics/reference.json"))
    raw["reference"]["train"].update(epochs=2, p=4, k=2, warmup_epochs=1, seeds=[0, 1], device="cpu")
    raw["downstream"].update(out_dir=str(tmp / "checkpoints/downstream"), metrics=str(tmp / "metrics/downstream.json"))
    raw["downstream"]["train"].update(epochs=2, p=4, k=2, warmup_epochs=1, seeds=[0], device="cpu")
    raw["downstream"]["mix"].update(synthetic=str(tmp / "data/synthetic"))
    raw["ablation"].update(work_dir=str(tmp / "checkpoints/ablation"), report=str(tmp / "reports/ablation"),
                           seeds=[0], workers=1)
    raw["utility"].update(metrics=str(tmp / "metrics/utility.json"), folds=2, seeds=[0], workers=1)
    raw["tracking"].update(uri=f"sqlite:///{tmp / 'mlflow.db'}")
    # every other output into tmp too
    raw["data"]["summary"] = str(tmp / "data/index.json")
    raw["prior"].update(out_dir=str(tmp / "prior"), ckpt_dir=str(tmp / "prior_state"), grid=str(tmp / "reports/prior.png"))
    raw["auditor"].update(out_dir=str(tmp / "auditor"), num_classes=6, per_class=4)
    raw["auditor"]["train"].update(epochs=1, p=4, k=2, warmup_epochs=1, device="cpu")
    raw["backbone"].update(out_dir=str(tmp / "backbone"), num_classes=6, per_class=4)
    raw["backbone"]["train"].update(epochs=1, p=4, k=2, warmup_epochs=1, device="cpu")
    raw["coldstart"].update(pretrained=str(tmp / "prior"), out_dir=str(tmp / "cs"), metrics=str(tmp / "metrics/cs.json"),
                            grid=str(tmp / "reports/cs.png"))
    raw["rl"].update(coldstart=str(tmp / "cs"), out_dir=str(tmp / "rl"), bank=str(tmp / "bank.parquet"),
                     metrics=str(tmp / "metrics/rl.json"))
    raw["synth"].update(checkpoint=str(tmp / "rl"), out_dir=str(tmp / "data/synthetic"),
                        metrics=str(tmp / "metrics/synth.json"))
    raw["audit"].update(encoder=str(tmp / "auditor"), novel_out_dir=str(tmp / "data/novel"),
                        report=str(tmp / "reports/privacy"), control_images=4, novel_ids=2)
    for stage in ("reference", "downstream"):  # the committed start, wherever a test runs from
        if raw[stage]["train"]["pretrained_path"]:
            raw[stage]["train"]["pretrained_path"] = str(ROOT / raw[stage]["train"]["pretrained_path"])
    raw["report"].update(markdown=str(tmp / "reports/report.md"), embedding=str(tmp / "reports/embedding.png"))
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
