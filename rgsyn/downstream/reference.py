"""The `reference` stage: the real-only re-id model; the first seed's model is the reference encoder of
every later stage (rewards' memory bank, synthesis audit). Its metrics are the real-only numbers the
downstream stage is compared with (same trainer; `downstream.train` should equal `reference.train`).
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
    with tracking.start_run(p.tracking, f"reference-seed{seed}", to_dict(p.reference), nested=True) as run:
        model, metrics = train_reid(ds, p.reference.train, seed, log=run.log, progress=progress)
        run.log({k: v for k, v in metrics.items()})
        if save_reference:
            save_encoder(model, p.reference.out_dir, seed=seed, dataset=ds.name, metrics=metrics,
                         params_hash=params_hash(p.reference), mlflow_run_id=run.id,
                         step=p.reference.train.epochs)
    return {"seed": seed, **metrics}


def write_metrics(path: str | Path, per_seed: list[dict]) -> dict:
    """mean ± std over seeds -> `path` (a DVC metrics file)."""
    out = aggregate(per_seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return out
