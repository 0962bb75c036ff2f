"""One entry point for the person re-id layouts, and a Parquet manifest of a loaded dataset.

Layouts (see each module's docstring for the on-disk format):

* ``"market1501"``         -> ``rgsyn.data.market1501.load``
* ``"cuhk03np-labeled"``   -> ``rgsyn.data.cuhk03np.load(variant="labeled")``
* ``"cuhk03np-detected"``  -> ``rgsyn.data.cuhk03np.load(variant="detected")``

Manifest (``index_to_parquet``/``read_index``): one row per image with columns
``split`` (string: train/query/gallery), ``path`` (string), ``pid`` (int32), ``camid`` (int32), in
the dataset's order (train, then query, then gallery); the dataset name is kept in the schema
metadata under ``rgsyn.dataset``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import cuhk03np, market1501
from .records import LayoutError, ReidDataset, ReidRecord, holdout_split

LAYOUTS = ("market1501", "cuhk03np-labeled", "cuhk03np-detected")
SPLIT_NAMES = ("train", "query", "gallery")
NAME_KEY = b"rgsyn.dataset"

SCHEMA = pa.schema(
    [("split", pa.string()), ("path", pa.string()), ("pid", pa.int32()), ("camid", pa.int32())]
)


def load_reid(root: str | os.PathLike, layout: str, **kw) -> ReidDataset:
    """Load the re-id dataset at ``root`` stored in ``layout`` (one of ``LAYOUTS``).

    ``kw`` goes to the layout's loader (e.g. ``check_images=False``).
    """
    if layout == "market1501":
        return market1501.load(root, **kw)
    if layout.startswith("cuhk03np-") and layout in LAYOUTS:
        return cuhk03np.load(root, variant=layout.split("-", 1)[1], **kw)
    raise ValueError(f"unknown re-id layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")


def _portable(path: str) -> str:
    """Paths inside the working directory are stored relative to it, so the manifest (a DVC output) has
    the same bytes in every clone; paths elsewhere (a real dataset on another disk) stay absolute."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def index_to_parquet(ds: ReidDataset, out_path: str | os.PathLike) -> Path:
    """Write ``ds`` as a Parquet manifest at ``out_path`` (parent folders are created)."""
    cols: dict[str, list] = {"split": [], "path": [], "pid": [], "camid": []}
    for split in SPLIT_NAMES:
        for r in getattr(ds, split):
            cols["split"].append(split)
            cols["path"].append(_portable(r.path))
            cols["pid"].append(r.pid)
            cols["camid"].append(r.camid)
    table = pa.Table.from_pydict(cols, schema=SCHEMA.with_metadata({NAME_KEY: ds.name.encode()}))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out_path)
    return out_path


def read_index(path: str | os.PathLike) -> ReidDataset:
    """Read a manifest written by ``index_to_parquet`` back into a ``ReidDataset``."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise LayoutError(f"{path}: cannot read Parquet manifest ({e}); write it with "
                          f"rgsyn.data.layouts.index_to_parquet.") from e
    missing = [c for c in SCHEMA.names if c not in table.column_names]
    if missing:
        raise LayoutError(f"{path}: manifest lacks column(s) {missing}; expected columns "
                          f"{SCHEMA.names}. Re-create it with index_to_parquet.")
    meta = table.schema.metadata or {}
    name = meta.get(NAME_KEY, path.stem.encode()).decode()
    cols = table.select(SCHEMA.names).to_pydict()
    splits: dict[str, list[ReidRecord]] = {s: [] for s in SPLIT_NAMES}
    for i, (split, p, pid, camid) in enumerate(zip(cols["split"], cols["path"], cols["pid"], cols["camid"])):
        if split not in splits:
            raise LayoutError(f"{path}: row {i} has split {split!r}; valid splits: {SPLIT_NAMES}.")
        if None in (p, pid, camid):
            raise LayoutError(f"{path}: row {i} has an empty path/pid/camid; re-create the manifest.")
        splits[split].append(ReidRecord(path=p, pid=int(pid), camid=int(camid)))
    return ReidDataset(name=name, **splits)


def member_split(data) -> tuple[list[ReidRecord], list[ReidRecord]]:
    """(members, held_out) of the indexed train split per `data.holdout_per_id` and `data.seed`
    (rgsyn.data.records.holdout_split); `data` is the params' DataParams."""
    return holdout_split(read_index(data.index).train, data.holdout_per_id, data.seed)
