"""The `data` stage: render the embedded default or validate a real layout, then index it.

The index (Parquet: split, path, pid, camid) is what every later stage reads, so they never
re-scan or re-validate the image folders.
"""
from __future__ import annotations

import json
from pathlib import Path

from rgsyn.config import DataParams
from rgsyn.data.layouts import FACE_LAYOUTS, index_to_parquet, load_faces, load_reid

EMBEDDED_LAYOUT, EMBEDDED_FACES = "embedded", "embedded-face"


def is_face(layout: str) -> bool:
    """Faces (verification pairs, CosFace) rather than person re-id (query/gallery)."""
    return layout == EMBEDDED_FACES or layout in FACE_LAYOUTS


def prepare(cfg: DataParams) -> dict:
    """Returns the dataset summary (images/ids per split) and writes `cfg.index` and `cfg.summary`."""
    root = Path(cfg.root)
    if cfg.layout == EMBEDDED_LAYOUT:
        from rgsyn.data.procedural.render import render_dataset

        render_dataset(root, cfg.embedded, cfg.seed)
        ds = load_reid(root, "market1501", check_images=cfg.check_images)
    elif cfg.layout == EMBEDDED_FACES:
        from rgsyn.data.procedural.face_pairs import FaceParams, render_face_dataset

        render_face_dataset(root, FaceParams(**vars(cfg.face)), cfg.seed)
        ds = load_faces(root, "imagefolder", cfg.sets, cfg.groups, cfg.check_images)
    elif is_face(cfg.layout):
        ds = load_faces(root, cfg.layout, cfg.sets, cfg.groups, cfg.check_images)
    else:
        ds = load_reid(root, cfg.layout, check_images=cfg.check_images)
    index_to_parquet(ds, cfg.index)
    summary = {"layout": cfg.layout, "root": str(root), **ds.summary()}
    Path(cfg.summary).write_text(json.dumps(summary, indent=1))
    return summary
