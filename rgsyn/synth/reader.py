"""Reading shards back as a torch Dataset (the downstream trainer's mixed real + synthetic batches).

PNG bytes stay encoded in memory (a shard of 64x32 images is ~1 MB) and are decoded per item, or all
at once with `images()` for trainers that keep a whole uint8 tensor on the device.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import Dataset

from rgsyn.synth.schema import MANIFEST, read_manifest, shard_dir


def shard_files(path: str | Path) -> list[Path]:
    """A shard file, a shard folder, or a release folder (its `data/` shard folder): the manifest's shards
    in order (or every shard-*.parquet)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no synthetic shards here (params: synth.out_dir; run the synthesize stage)")
    if shard_dir(path).is_dir():
        path = shard_dir(path)
    manifest = read_manifest(path)
    files = [path / e["file"] for e in manifest["shards"]] if manifest else sorted(path.glob("shard-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{path}: no shard-*.parquet and no {MANIFEST}; run the synthesize stage")
    return files


class SyntheticShards(Dataset):
    """Rows of one or more shards. Item i -> (image uint8 (3, H, W), label = dataset pid).

    Columns stay available: `labels` (N,), `features` (N, D) float32, `sample_ids`, `table` (pyarrow).
    """

    def __init__(self, table: pa.Table):
        self.table = table
        self._png = table.column("image").combine_chunks().field("bytes").to_pylist()
        self.labels = torch.from_numpy(table.column("label").to_numpy().astype(np.int64))
        self.sample_ids = table.column("sample_id").to_pylist()

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def features(self) -> torch.Tensor:
        col = self.table.column("features").combine_chunks()
        d = col.type.list_size
        return torch.from_numpy(np.array(col.values.to_numpy(), np.float32).reshape(-1, d))

    def image(self, i: int) -> torch.Tensor:
        with Image.open(io.BytesIO(self._png[i])) as im:
            return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.image(i), int(self.labels[i])

    def images(self) -> torch.Tensor:
        """All images decoded: uint8 (N, 3, H, W)."""
        return torch.stack([self.image(i) for i in range(len(self))]) if len(self) else torch.zeros(0, 3, 0, 0,
                                                                                                   dtype=torch.uint8)


def read_shards(path, accepted_only=True) -> SyntheticShards:
    """Shards at `path` (folder or one file) -> Dataset; `accepted_only` drops rows the audit rejected."""
    tables = [pq.read_table(f) for f in shard_files(path)]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if accepted_only:
        table = table.filter(pc.field("accepted"))
    return SyntheticShards(table)
