"""bench/release_gates.py: a gate's copy of the shards carries its own `accepted` column, and the reader
keeps exactly the rows it accepts."""
import numpy as np
import pyarrow as pa

from rgsyn.synth.reader import read_shards
from tests.conftest import load_bench


def test_gate_copy_keeps_the_rows_its_mask_accepts(tmp_path):
    bench = load_bench("release_gates")
    image = pa.array([{"bytes": b"", "path": ""}] * 4, pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    table = pa.table({"image": image, "label": pa.array([3, 3, 5, 7], pa.int64()),
                      "sample_id": ["a", "b", "c", "d"], "accepted": [True, True, False, True]})
    folder = bench.write_gate(table, np.array([False, True, False, True]), tmp_path / "gate")
    kept = read_shards(folder, accepted_only=True)
    assert kept.sample_ids == ["b", "d"] and kept.labels.tolist() == [3, 7]
    assert read_shards(folder, accepted_only=False).sample_ids == ["a", "b", "c", "d"]
