"""load_reid dispatch and the Parquet manifest."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rgsyn.data import layouts
from rgsyn.data.records import LayoutError, ReidDataset, ReidRecord

from .test_data_cuhk03np import make_cuhk03np
from .test_data_market1501 import make_market


def test_load_reid_dispatch(tmp_path):
    market = layouts.load_reid(make_market(tmp_path / "market"), "market1501")
    assert market.name == "market1501" and len(market.train) == 3
    cuhk = make_cuhk03np(tmp_path / "cuhk03-np")
    assert layouts.load_reid(cuhk, "cuhk03np-labeled").name == "cuhk03np-labeled"
    assert layouts.load_reid(cuhk, "cuhk03np-detected", check_images=False).name == "cuhk03np-detected"


@pytest.mark.parametrize("bad", ["market", "cuhk03np-hand", "duke"])
def test_unknown_layout_lists_valid_names(bad):
    with pytest.raises(ValueError, match="market1501, cuhk03np-labeled, cuhk03np-detected"):
        layouts.load_reid("/nowhere", bad)


def test_parquet_round_trip(tmp_path):
    ds = layouts.load_reid(make_market(tmp_path / "market"), "market1501")
    out = layouts.index_to_parquet(ds, tmp_path / "index" / "market1501.parquet")
    table = pq.read_table(out)
    assert table.schema.field("pid").type == pa.int32() and table.schema.field("camid").type == pa.int32()
    assert table.schema.field("split").type == pa.string() and table.schema.field("path").type == pa.string()
    assert table.column("split").to_pylist() == ["train"] * 3 + ["query"] * 2 + ["gallery"] * 3
    assert layouts.read_index(out) == ds


def test_parquet_empty_split_round_trip(tmp_path):
    ds = ReidDataset(name="tiny", train=[ReidRecord("a.jpg", 5, 1)])
    assert layouts.read_index(layouts.index_to_parquet(ds, tmp_path / "t.parquet")) == ds


def test_read_index_errors(tmp_path):
    pq.write_table(pa.table({"path": ["a.jpg"], "pid": [1]}), tmp_path / "bad.parquet")
    with pytest.raises(LayoutError, match=r"bad.parquet.*lacks column.*split"):
        layouts.read_index(tmp_path / "bad.parquet")
    pq.write_table(pa.table({"split": ["val"], "path": ["a.jpg"], "pid": [1], "camid": [0]}), tmp_path / "v.parquet")
    with pytest.raises(LayoutError, match="split 'val'"):
        layouts.read_index(tmp_path / "v.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"nope")
    with pytest.raises(LayoutError, match="junk.parquet"):
        layouts.read_index(tmp_path / "junk.parquet")
