"""The per-identity memory bank (paper §4.2): reference-encoder features of the real train images the
generator may learn from (the members: `data.holdout_per_id` images per identity are held out for
membership inference), L2-normalised, built once and stored as Parquet (pid int32, path string,
features list<float32>[D])."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from rgsyn.data.images import load_images
from rgsyn.config import DataParams
from rgsyn.data.layouts import member_split
from rgsyn.data.records import ReidRecord
from rgsyn.encoder import IdentityEncoder, extract_features, load_encoder


def build_memory_bank(encoder: IdentityEncoder, records: list[ReidRecord], path: str | Path, batch: int = 256) -> Path:
    feats = extract_features(encoder, load_images([r.path for r in records], encoder.cfg.height, encoder.cfg.width),
                             batch, next(encoder.parameters()).device)  # (N, D), L2-normalised
    d = feats.shape[1]
    table = pa.table({
        "pid": pa.array([r.pid for r in records], pa.int32()),
        "path": pa.array([r.path for r in records], pa.string()),
        "features": pa.FixedSizeListArray.from_arrays(pa.array(feats.numpy().ravel(), pa.float32()), d),
    })
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return path


def ensure_memory_bank(path: str | Path, data: DataParams, encoder: IdentityEncoder | str | Path) -> Path:
    """Build the bank at `path` from the index's member train images unless it exists; `encoder` is a
    loaded encoder or its checkpoint folder (loaded only when the bank has to be built)."""
    path = Path(path)
    if not path.exists():
        if not isinstance(encoder, IdentityEncoder):
            encoder = load_encoder(encoder)
        build_memory_bank(encoder, member_split(data)[0], path)
    return path


def load_memory_bank(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (features (N, D) float32, pids (N,) int64)."""
    t = pq.read_table(path)
    col = t.column("features").combine_chunks()
    d = col.type.list_size
    feats = np.array(col.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, d)
    return torch.from_numpy(feats), torch.from_numpy(t.column("pid").to_numpy().astype(np.int64))


def by_class(feats: torch.Tensor, pids: torch.Tensor, class_pids: list[int]) -> list[torch.Tensor]:
    """Bank features per generator class index (class i = class_pids[i])."""
    return [feats[pids == p] for p in class_pids]
