"""The `data` stage: render the embedded default or validate a real layout, then index it.

The index (Parquet: split, path, pid, camid) is what every later stage reads, so they never
re-scan or re-validate the image folders.
"""
from __future__ import annotations

import json
from pathlib import Path

from rgsyn.config import DataParams
from rgsyn.data.layouts import index_to_parquet, load_reid
from rgsyn.data.render import render_dataset

EMBEDDED_LAYOUT = "embedded"


def prepare(cfg: DataParams) -> dict:
    """Returns the dataset summary (images/ids/cameras per split) and writes `cfg.index`."""
    root = Path(cfg.root)
    if cfg.layout == EMBEDDED_LAYOUT:
        render_dataset(root, cfg.embedded, cfg.seed)
        ds = load_reid(root, "market1501", check_images=cfg.check_images)
    else:
        ds = load_reid(root, cfg.layout, check_images=cfg.check_images)
    index_to_parquet(ds, cfg.index)
    summary = {"layout": cfg.layout, "root": str(root), **ds.summary()}
    Path(cfg.index).with_suffix(".json").write_text(json.dumps(summary, indent=1))
    return summary
