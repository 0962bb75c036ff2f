"""The shard format: one zstd Parquet file per shard, loadable by pyarrow and by Hugging Face `datasets`
(the `huggingface` schema metadata tells it that `image` is an Image feature), plus the
`_manifest.json` that lists every finished shard with its row count and sha256. Both lie in the
`data/` folder of a release folder (`shard_dir`), beside the release's dataset card (rgsyn.synth.card).

Writes are atomic: a shard goes to a unique temporary name in the same folder and is renamed into
place, so a killed run leaves either a whole shard or none (temporaries are swept by `sweep_temp`).
Nothing volatile (run ids, timestamps, host names) goes into a shard: same inputs -> same bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "_manifest.json"
SHARD_DIR = "data"  # Hugging Face's repository layout: the data files under data/, the card beside them
META_KEY = b"rgsyn"  # file metadata: provenance of the shard (JSON)
REWARD_COLUMNS = ("r_sem", "r_cov", "r_exp", "reward")
# the privacy audit's columns (rgsyn.privacy), after the generation ones
AUDIT_FLOATS = ("copy_pixel_sim", "copy_feature_sim", "identity_leak_sim")
AUDIT_FLAGS = ("near_copy", "consistent")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def shard_dir(release: str | Path) -> Path:
    """The folder of a release's shards and manifest."""
    return Path(release) / SHARD_DIR


def arrow_schema(dim: int) -> pa.Schema:
    """The exact shard columns; `dim` = the reference encoder's feature size D."""
    return pa.schema([
        ("sample_id", pa.string()),
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("label", pa.int32()),
        ("seed", pa.int64()),
        ("features", pa.list_(pa.float32(), dim)),  # fixed_size_list<float32>[D]
        *[(c, pa.float32()) for c in REWARD_COLUMNS],
        ("nn_real_sim", pa.float32()),
        ("accepted", pa.bool_()),
        ("generator_ckpt", pa.string()),
        ("run_id", pa.string()),
        *[(c, pa.float32()) for c in AUDIT_FLOATS],
        *[(c, pa.bool_()) for c in AUDIT_FLAGS],
    ])


def hf_features(dim: int) -> dict:
    """The `datasets.Features` dict of the schema, as `datasets>=4` writes it (no import of datasets)."""
    f32 = {"dtype": "float32", "_type": "Value"}
    return {
        "sample_id": {"dtype": "string", "_type": "Value"},
        "image": {"_type": "Image"},
        "label": {"dtype": "int32", "_type": "Value"},
        "seed": {"dtype": "int64", "_type": "Value"},
        "features": {"feature": f32, "length": dim, "_type": "List"},
        **{c: f32 for c in (*REWARD_COLUMNS, "nn_real_sim")},
        "accepted": {"dtype": "bool", "_type": "Value"},
        "generator_ckpt": {"dtype": "string", "_type": "Value"},
        "run_id": {"dtype": "string", "_type": "Value"},
        **{c: f32 for c in AUDIT_FLOATS},
        **{c: {"dtype": "bool", "_type": "Value"} for c in AUDIT_FLAGS},
    }


def build_table(cols: dict, generator_ckpt: str, run_id: str, meta: dict) -> pa.Table:
    """A shard's columns -> an Arrow table with the schema and both metadata keys.

    cols: sample_id (M,) str, png (M,) bytes, label, seed, the reward, audit and flag columns (M,),
    features (M, D) float32.
    """
    m, dim = cols["features"].shape
    ids = cols["sample_id"]
    image = pa.StructArray.from_arrays([pa.array(cols["png"], pa.binary()), pa.array([f"{s}.png" for s in ids])],
                                       names=["bytes", "path"])
    arrays = {
        "sample_id": pa.array(ids, pa.string()),
        "image": image,
        "label": pa.array(cols["label"], pa.int32()),
        "seed": pa.array(cols["seed"], pa.int64()),
        "features": pa.FixedSizeListArray.from_arrays(pa.array(cols["features"].astype(np.float32).ravel()), dim),
        **{c: pa.array(cols[c], pa.float32()) for c in (*REWARD_COLUMNS, "nn_real_sim")},
        "accepted": pa.array(cols["accepted"], pa.bool_()),
        "generator_ckpt": pa.array([generator_ckpt] * m, pa.string()),
        "run_id": pa.array([run_id] * m, pa.string()),
        **{c: pa.array(cols[c], pa.float32()) for c in AUDIT_FLOATS},
        **{c: pa.array(cols[c], pa.bool_()) for c in AUDIT_FLAGS},
    }
    schema = arrow_schema(dim).with_metadata({
        b"huggingface": json.dumps({"info": {"features": hf_features(dim)}}).encode(),
        META_KEY: json.dumps(meta, sort_keys=True).encode(),
    })
    return pa.Table.from_pydict(arrays, schema=schema)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(table: pa.Table, path: str | Path) -> Path:
    """Write to a unique temporary file beside `path`, fsync, rename: readers never see half a shard."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        # one row group, no page statistics that could vary: the bytes depend on the table only
        pq.write_table(table, tmp, compression="zstd", row_group_size=max(1, table.num_rows))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def shard_meta(path: str | Path) -> dict | None:
    """The rgsyn provenance of a finished shard (+ `rows`), or None if it is missing or unreadable."""
    try:
        md = pq.read_metadata(path)
    except (OSError, pa.ArrowException):
        return None
    raw = (md.metadata or {}).get(META_KEY)
    return {**json.loads(raw), "rows": md.num_rows} if raw else None


def sweep_temp(out_dir: str | Path) -> list[str]:
    """Remove temporaries of killed writers (call when no writer runs)."""
    gone = []
    for f in Path(out_dir).glob(".shard-*.tmp"):
        f.unlink(missing_ok=True)
        gone.append(f.name)
    return gone


def read_manifest(out_dir: str | Path) -> dict | None:
    path = Path(out_dir) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def write_manifest(out_dir: str | Path, manifest: dict) -> Path:
    path = Path(out_dir) / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path
