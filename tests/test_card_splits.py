"""The dataset card's `dataset_info` as `datasets` reads it: a tiny release folder of real shards
(schema.build_table, schema.write_atomic) with the card's Hugging Face keys (card.hf_layout) loads with
no complaint about the card, and its split sizes are the ones `datasets` records."""
import logging
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from rgsyn.synth import card, schema
from rgsyn.synth.engine import png_bytes


def shard_columns(pid: int, n: int, dim: int) -> dict:
    """n rows of identity `pid` in build_table's input form, every other one accepted."""
    rng = np.random.default_rng(pid)
    return {"sample_id": [f"{pid:04d}_{k:04d}" for k in range(n)],
            "png": [png_bytes(rng.integers(0, 256, (8, 4, 3), dtype=np.uint8)) for _ in range(n)],
            "label": np.full(n, pid, np.int32), "seed": np.arange(n, dtype=np.int64),
            "features": rng.standard_normal((n, dim)).astype(np.float32),
            **{c: rng.random(n).astype(np.float32)
               for c in (*schema.REWARD_COLUMNS, "nn_real_sim", *schema.AUDIT_FLOATS)},
            "accepted": np.arange(n) % 2 == 0, **{c: np.ones(n, bool) for c in schema.AUDIT_FLAGS}}


@pytest.fixture
def release(tmp_path):
    """A release folder: three shards of 3, 4 and 5 rows (about half of them accepted) and a card whose
    YAML holds the keys `datasets` reads."""
    folder = schema.shard_dir(tmp_path / "release")
    folder.mkdir(parents=True)
    files = [schema.write_atomic(schema.build_table(shard_columns(i + 1, 3 + i, 4), "ckpt", "run", {}),
                                 folder / schema.shard_name(i)) for i in range(3)]
    meta = card.hf_layout(files)
    (tmp_path / "release" / card.CARD).write_text("---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n\n# x\n")
    return tmp_path / "release", files, meta


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_card_splits_load_without_warning_and_match_what_datasets_records(release, tmp_path, monkeypatch):
    folder, files, meta = release
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    import datasets

    logger = logging.getLogger("datasets")
    records, level = Records(), logger.level
    logger.addHandler(records)
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "hf"))
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    complaints = [m for m in records.messages + [str(w.message) for w in caught]
                  if "dataset_info" in m or "splits" in m or "malformed" in m]
    assert complaints == []
    split = meta["dataset_info"]["splits"][0]
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    assert split["num_examples"] == rows == len(ds) == 12  # every row of every shard, not only accepted ones
    assert sum(ds["accepted"]) < rows
    recorded = ds.info.splits["train"]
    assert (recorded.name, recorded.num_examples, recorded.num_bytes) == ("train", rows, split["num_bytes"])
    info = meta["dataset_info"]
    assert info["dataset_size"] == split["num_bytes"] == ds.info.dataset_size
    assert info["download_size"] == sum(f.stat().st_size for f in files)
    assert datasets.SplitDict._from_yaml_list(info["splits"])["train"].num_examples == rows


def test_card_refuses_shards_the_manifest_does_not_list(release):
    """`datasets` reads every file of the configs' glob: a shard outside the manifest would make the
    card's row count wrong, so the card is not written over it."""
    folder, files, _ = release
    schema.write_manifest(schema.shard_dir(folder), {"shards": [{"file": f.name} for f in files[:2]]})
    with pytest.raises(ValueError, match=r"\['shard-00002.parquet'\] are not shards of its _manifest.json"):
        card._shards(folder)
