"""One entry point for the dataset layouts, and a Parquet manifest of a loaded dataset.

Person re-id layouts (see each module's docstring for the on-disk format):

* ``"market1501"``         -> ``rgsyn.data.market1501.load``
* ``"cuhk03np-labeled"``   -> ``rgsyn.data.cuhk03np.load(variant="labeled")``
* ``"cuhk03np-detected"``  -> ``rgsyn.data.cuhk03np.load(variant="detected")``

Face layouts (``load_faces``): the train images as ``"imagefolder"`` (``<root>/train/<identity>/``, as
CASIA-WebFace is usually unpacked) or ``"recordio"`` (insightface's ``<root>/train.rec`` + ``.idx``,
read without MXNet: rgsyn.data.recordio), and the verification pairs as insightface ``.bin`` files
``<root>/<name>.bin`` for every name in ``data.sets`` and ``data.groups``.

Manifest (``index_to_parquet``/``read_index``): one row per image with columns ``split`` (string:
train/query/gallery, or for faces train/set/group), ``path`` (string; a pack record is
``<pack>.rec#<key>``; a pair file is its ``.bin``), ``pid`` (int32; -1 for pair files), ``camid``
(int32), in the dataset's order; the dataset name is kept in the schema metadata under
``rgsyn.dataset``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import cuhk03np, market1501
from .records import FaceDataset, LayoutError, ReidDataset, ReidRecord, holdout_split

LAYOUTS = ("market1501", "cuhk03np-labeled", "cuhk03np-detected")
FACE_LAYOUTS = ("imagefolder", "recordio")
SPLIT_NAMES = ("train", "query", "gallery")
FACE_SPLITS = ("train", "set", "group")
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


def load_faces(root: str | os.PathLike, layout: str, sets, groups, check_images: bool = True) -> FaceDataset:
    """The face dataset at ``root``: train images in ``layout`` (imagefolder | recordio), pair files
    ``<root>/<name>.bin`` for each name in ``sets`` and ``groups``."""
    root = Path(root)
    if layout == "imagefolder":
        from .imagefolder import load

        samples, classes = load(root / "train", check_images=check_images)
        train = [ReidRecord(path=p, pid=c, camid=0) for p, c in samples]
    elif layout == "recordio":
        from .recordio import RecordIOPack

        with RecordIOPack(root) as pack:
            labels = pack.labels()
            train = [ReidRecord(path=f"{pack.rec_path}#{k}", pid=int(y), camid=0)
                     for k, y in sorted(zip(pack.keys, labels), key=lambda kv: (kv[1], kv[0]))]
    else:
        raise ValueError(f"unknown face layout {layout!r}; valid layouts: {', '.join(FACE_LAYOUTS)}")
    found = {}
    for name in [*sets, *groups]:
        f = root / f"{name}.bin"
        if not f.exists():
            raise LayoutError(f"{f}: pair file not found; put the insightface .bin of `{name}` there or remove the "
                              "name from data.sets / data.groups in params.yaml")
        found[name] = str(f)
    return FaceDataset(name=root.name, train=train, sets={n: found[n] for n in sets},
                       groups={n: found[n] for n in groups})


def _portable(path: str) -> str:
    """Paths inside the working directory are stored relative to it, so the manifest (a DVC output) has
    the same bytes in every clone; paths elsewhere (a real dataset on another disk) stay absolute."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def index_to_parquet(ds: ReidDataset | FaceDataset, out_path: str | os.PathLike) -> Path:
    """Write ``ds`` as a Parquet manifest at ``out_path`` (parent folders are created)."""
    cols: dict[str, list] = {"split": [], "path": [], "pid": [], "camid": []}

    def add(split, path, pid, camid):
        cols["split"].append(split)
        cols["path"].append(_portable(path))
        cols["pid"].append(pid)
        cols["camid"].append(camid)
    if isinstance(ds, FaceDataset):
        for r in ds.train:
            add("train", r.path, r.pid, r.camid)
        for split, files in (("set", ds.sets), ("group", ds.groups)):
            for path in files.values():
                add(split, path, -1, 0)
    else:
        for split in SPLIT_NAMES:
            for r in getattr(ds, split):
                add(split, r.path, r.pid, r.camid)
    table = pa.Table.from_pydict(cols, schema=SCHEMA.with_metadata({NAME_KEY: ds.name.encode()}))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out_path)
    return out_path


def read_index(path: str | os.PathLike) -> ReidDataset | FaceDataset:
    """Read a manifest written by ``index_to_parquet`` back into a ``ReidDataset`` or ``FaceDataset``."""
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
    face = bool(set(cols["split"]) & {"set", "group"})
    names = FACE_SPLITS if face else SPLIT_NAMES
    splits: dict[str, list[ReidRecord]] = {s: [] for s in names}
    for i, (split, p, pid, camid) in enumerate(zip(cols["split"], cols["path"], cols["pid"], cols["camid"])):
        if split not in splits:
            raise LayoutError(f"{path}: row {i} has split {split!r}; valid splits: {names}.")
        if None in (p, pid, camid):
            raise LayoutError(f"{path}: row {i} has an empty path/pid/camid; re-create the manifest.")
        splits[split].append(ReidRecord(path=p, pid=int(pid), camid=int(camid)))
    if face:
        stem = lambda r: Path(r.path).stem  # noqa: E731
        return FaceDataset(name=name, train=splits["train"], sets={stem(r): r.path for r in splits["set"]},
                           groups={stem(r): r.path for r in splits["group"]})
    return ReidDataset(name=name, **splits)


def member_split(data) -> tuple[list[ReidRecord], list[ReidRecord]]:
    """(members, held_out) of the indexed train split per `data.holdout_per_id` and `data.seed`
    (rgsyn.data.records.holdout_split); `data` is the params' DataParams."""
    return holdout_split(read_index(data.index).train, data.holdout_per_id, data.seed)
