"""Identity-per-folder face datasets."""
from __future__ import annotations

from pathlib import Path

import pytest

from rgsyn.data import imagefolder
from rgsyn.data.records import LayoutError

from .test_data_market1501 import write_image


def make_faces(root: Path) -> Path:
    write_image(root / "Zoe_Ball" / "Zoe_Ball_0001.jpg", size=(8, 8))
    write_image(root / "Aaron_Eckhart" / "Aaron_Eckhart_0002.png", size=(8, 8))
    write_image(root / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg", size=(8, 8))
    (root / "Aaron_Eckhart" / "Thumbs.db").write_bytes(b"x")
    write_image(root / ".ipynb_checkpoints" / "x.jpg", size=(8, 8))
    (root / "README.txt").write_text("faces")
    return root


def test_load(tmp_path):
    root = make_faces(tmp_path / "faces")
    samples, classes = imagefolder.load(root)
    assert classes == ["Aaron_Eckhart", "Zoe_Ball"]
    assert [(Path(p).name, c) for p, c in samples] == [
        ("Aaron_Eckhart_0001.jpg", 0), ("Aaron_Eckhart_0002.png", 0), ("Zoe_Ball_0001.jpg", 1)]


def test_empty_identity_named(tmp_path):
    root = make_faces(tmp_path / "faces")
    (root / "Nobody").mkdir()
    (root / "Nobody" / "notes.txt").write_text("")
    with pytest.raises(LayoutError, match="Nobody.*empty identity"):
        imagefolder.load(root)


def test_no_identity_folders(tmp_path):
    (tmp_path / "flat").mkdir()
    write_image(tmp_path / "flat" / "a.jpg")
    with pytest.raises(LayoutError, match="no identity folders"):
        imagefolder.load(tmp_path / "flat")
    with pytest.raises(LayoutError, match="not found"):
        imagefolder.load(tmp_path / "missing")


def test_unreadable_image_named(tmp_path):
    root = make_faces(tmp_path / "faces")
    (root / "Zoe_Ball" / "Zoe_Ball_0002.jpg").write_bytes(b"GIF? no, garbage")
    with pytest.raises(LayoutError, match="Zoe_Ball_0002.jpg"):
        imagefolder.load(root)
    samples, _ = imagefolder.load(root, check_images=False)
    assert len(samples) == 4
