"""CUHK03-NP loader on a tiny fixture in the distributed layout (cuhk03-np/{labeled,detected}/...)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rgsyn.data import cuhk03np
from rgsyn.data.records import LayoutError

from .test_data_market1501 import write_image

TRAIN = ["0001_c1_1.png", "0001_c1_2.png", "0001_c2_6.png", "0002_c2_10.png"]
QUERY = ["0003_c1_22.png", "0003_c2_27.png"]
GALLERY = ["0003_c1_21.png", "0003_c1_23.png", "0003_c2_28.png", "0004_c1_1.png"]


def make_cuhk03np(root: Path, variants=("labeled", "detected")) -> Path:
    for v in variants:
        for sub, names in (("bounding_box_train", TRAIN), ("query", QUERY), ("bounding_box_test", GALLERY)):
            for n in names:
                write_image(root / v / sub / n, size=(6, 12))
        (root / v / "bounding_box_train" / "Thumbs.db").write_bytes(b"x")
    return root


@pytest.mark.parametrize("name,parsed", [("0001_c1_1.png", (1, 0, 1)), ("1467_c2_10.png", (1467, 1, 10))])
def test_parse_format_round_trip(name, parsed):
    assert cuhk03np.parse_name(name) == parsed
    assert cuhk03np.format_name(*parsed) == name


@pytest.mark.parametrize("bad", ["0001_c3_1.png", "0001_c1s1_000451_03.jpg", "0001_1.png"])
def test_parse_bad_name(bad):
    with pytest.raises(LayoutError, match=bad.replace(".", r"\.")):
        cuhk03np.parse_name(bad)


@pytest.mark.parametrize("variant", ["labeled", "detected"])
def test_load_variant(tmp_path, variant):
    root = make_cuhk03np(tmp_path / "cuhk03-np")
    ds = cuhk03np.load(root, variant=variant)
    assert ds.name == f"cuhk03np-{variant}"
    assert [Path(r.path).name for r in ds.train] == sorted(TRAIN)
    assert all(f"/{variant}/" in r.path for r in ds.train + ds.query + ds.gallery)
    assert [(r.pid, r.camid) for r in ds.query] == [(3, 0), (3, 1)]
    assert {r.camid for r in ds.gallery} == {0, 1}
    assert len(ds.gallery) == 4


def test_root_may_be_the_variant_folder(tmp_path):
    root = make_cuhk03np(tmp_path / "cuhk03-np")
    assert cuhk03np.load(root / "detected", variant="detected") == cuhk03np.load(root, variant="detected")
    with pytest.raises(LayoutError, match="variant='labeled'"):
        cuhk03np.load(root / "detected", variant="labeled")


def test_capitalised_variant_folder(tmp_path):
    root = make_cuhk03np(tmp_path / "CUHK03_np", variants=("Labeled",))
    assert len(cuhk03np.load(root, variant="labeled").train) == len(TRAIN)


def test_bad_variant():
    with pytest.raises(ValueError, match="labeled"):
        cuhk03np.load("/nowhere", variant="hand")


def test_missing_folders_named(tmp_path):
    root = make_cuhk03np(tmp_path / "cuhk03-np", variants=("labeled",))
    with pytest.raises(LayoutError, match="detected.*CUHK03-NP layout"):
        cuhk03np.load(root, variant="detected")
    shutil.rmtree(root / "labeled" / "query")
    with pytest.raises(LayoutError, match="query"):
        cuhk03np.load(root, variant="labeled")


def test_unreadable_image_names_file(tmp_path):
    root = make_cuhk03np(tmp_path / "cuhk03-np", variants=("labeled",))
    (root / "labeled" / "query" / "0003_c2_27.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(LayoutError, match="0003_c2_27.png"):
        cuhk03np.load(root, variant="labeled")


def test_check_protocol(tmp_path):
    assert (cuhk03np.NUM_TRAIN_IDS, cuhk03np.NUM_TEST_IDS) == (767, 700)
    ds = cuhk03np.load(make_cuhk03np(tmp_path / "c", variants=("labeled",)), variant="labeled")
    warnings = cuhk03np.check_protocol(ds)
    assert any("2 train identities" in w and "767" in w for w in warnings)
    assert any("2 test identities" in w and "700" in w for w in warnings)
    assert not any("both train and test" in w for w in warnings)
