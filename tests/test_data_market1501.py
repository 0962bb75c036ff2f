"""Market-1501 loader on a tiny fixture in the real on-disk layout (real names, real JPEGs)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from rgsyn.data import market1501
from rgsyn.data.records import LayoutError

TRAIN = ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c3s3_015390_02.jpg",
         "-1_c1s1_000401_03.jpg"]
QUERY = ["0001_c1s1_001051_00.jpg", "0003_c2s1_000301_00.jpg"]
GALLERY = ["0001_c2s1_000451_01.jpg", "0003_c1s1_000551_04.jpg", "0000_c1s1_000151_01.jpg",
           "-1_c6s2_000001_02.jpg"]


def write_image(path: Path, color=(200, 30, 30), size=(8, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def make_market(root: Path) -> Path:
    """A Market-1501 tree: bounding_box_train/, query/, bounding_box_test/ (+ a Thumbs.db)."""
    for sub, names in (("bounding_box_train", TRAIN), ("query", QUERY), ("bounding_box_test", GALLERY)):
        for n in names:
            write_image(root / sub / n)
    (root / "bounding_box_train" / "Thumbs.db").write_bytes(b"\x00windows junk")
    (root / "readme.txt").write_text("Market-1501")
    return root


@pytest.mark.parametrize("name,parsed", [
    ("0002_c1s1_000451_03.jpg", (2, 0, 1, 451, 3)),
    ("-1_c1s1_000401_03.jpg", (-1, 0, 1, 401, 3)),
    ("0000_c6s4_002202_01.jpg", (0, 5, 4, 2202, 1)),
    ("1501_c5s3_066562_00.jpg", (1501, 4, 3, 66562, 0)),
])
def test_parse_format_round_trip(name, parsed):
    assert market1501.parse_name(name) == parsed
    assert market1501.format_name(*parsed) == name
    assert market1501.parse_name("/data/market/query/" + name) == parsed


@pytest.mark.parametrize("bad", ["0002_c1_000451_03.jpg", "abcd_c1s1_000451_03.jpg", "0002_c0s1_000451_03.jpg",
                                 "0002_c1s1_000451_03.txt", "Thumbs.db"])
def test_parse_bad_name_names_file(bad):
    with pytest.raises(LayoutError, match=bad.replace(".", r"\.")):
        market1501.parse_name(bad)


def test_load_drops_junk_keeps_distractors_in_gallery(tmp_path):
    root = make_market(tmp_path / "Market-1501-v15.09.15")
    ds = market1501.load(root)
    assert ds.name == "market1501"
    assert [Path(r.path).name for r in ds.train] == sorted(TRAIN[:3])  # junk dropped, Thumbs.db ignored
    assert {r.pid for r in ds.train} == {2, 7}
    assert [(r.pid, r.camid) for r in ds.query] == [(1, 0), (3, 1)]
    gallery_pids = [r.pid for r in ds.gallery]
    assert -1 not in gallery_pids and 0 in gallery_pids and len(ds.gallery) == 3
    assert all(Path(r.path).is_file() and Path(r.path).is_absolute() for r in ds.gallery)
    assert market1501.load(root) == ds  # deterministic


def test_missing_folder_names_it(tmp_path):
    root = make_market(tmp_path / "market")
    shutil.rmtree(root / "bounding_box_test")
    with pytest.raises(LayoutError, match="bounding_box_test") as e:
        market1501.load(root)
    assert "Market-1501 layout" in str(e.value)
    with pytest.raises(LayoutError, match="not found"):
        market1501.load(tmp_path / "nowhere")


def test_empty_split_folder(tmp_path):
    root = make_market(tmp_path / "market")
    shutil.rmtree(root / "query")
    (root / "query").mkdir()
    (root / "query" / "Thumbs.db").write_bytes(b"x")
    with pytest.raises(LayoutError, match=r"query.*no \.jpg/\.png images"):
        market1501.load(root)


def test_unreadable_image_names_file(tmp_path):
    root = make_market(tmp_path / "market")
    bad = root / "bounding_box_test" / "0003_c1s1_000551_04.jpg"
    bad.write_bytes(b"this is not a jpeg at all")
    with pytest.raises(LayoutError, match="0003_c1s1_000551_04.jpg.*unreadable image"):
        market1501.load(root)
    assert len(market1501.load(root, check_images=False).gallery) == 3


def test_bad_name_in_folder_names_file(tmp_path):
    root = make_market(tmp_path / "market")
    write_image(root / "query" / "IMG_0001.jpg")
    with pytest.raises(LayoutError, match="IMG_0001.jpg"):
        market1501.load(root)
