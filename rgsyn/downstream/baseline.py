"""The `baseline` stage: the real-only re-id model over several seeds; seed 0's model becomes the
reference encoder of every later stage.
"""
from __future__ import annotations

import json
from pathlib import Path

from rgsyn import tracking
from rgsyn.config import Params, params_hash, to_dict
from rgsyn.data.layouts import read_index
from rgsyn.downstream.reid import aggregate, train_reid
from rgsyn.encoder import save_encoder


def train_seed(p: Params, seed: int, save_reference: bool, progress: bool = True) -> dict:
    """Train + evaluate one seed (one nested MLflow run); optionally save it as the reference encoder."""
    ds = read_index(p.data.index)
    with tracking.start_run(p.tracking, f"baseline-seed{seed}", to_dict(p.baseline), nested=True) as run:
        model, metrics = train_reid(ds, p.baseline.train, seed, log=run.log, progress=progress)
        run.log({k: v for k, v in metrics.items()})
        if save_reference:
            save_encoder(model, p.baseline.out_dir, seed=seed, dataset=ds.name, metrics=metrics,
                         params_hash=params_hash(p.baseline), mlflow_run_id=run.id,
                         step=p.baseline.train.epochs)
    return {"seed": seed, **metrics}


def write_metrics(p: Params, per_seed: list[dict]) -> dict:
    """mean ± std over seeds -> `baseline.metrics` (the DVC metrics file)."""
    out = aggregate(per_seed)
    path = Path(p.baseline.metrics)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return out
