"""Market-1501 (Zheng et al., ICCV 2015) in its distributed on-disk layout.

On-disk layout (``Market-1501-v15.09.15/``)::

    <root>/
        bounding_box_train/   0002_c1s1_000451_03.jpg ...   -> train
        query/                0001_c1s1_001051_00.jpg ...   -> query
        bounding_box_test/    0000_c1s1_000151_01.jpg ...   -> gallery
        (gt_bbox/, gt_query/, readme.txt: not used)

File names are ``PPPP_cCsS_FFFFFF_NN.jpg``:

* ``PPPP``   person id, 4 digits; ``0000`` = distractor (a detection that is not one of the 1501
  identities), ``-1`` = junk (a bad detection; the name then starts ``-1_``);
* ``cC``     camera 1..6 (``camid`` in our records is 0-based: ``c1`` -> 0);
* ``sS``     video sequence of that camera;
* ``FFFFFF`` frame number in the sequence;
* ``NN``     index of the bounding box in that frame.

Junk images are dropped from every split. Distractors are kept in the gallery (they are part of the
benchmark) and dropped from train and query.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from .imagefolder import list_images, verify_image
from .records import LayoutError, ReidDataset, ReidRecord

NAME_RE = re.compile(
    r"^(?P<pid>-1|\d+)_c(?P<cam>\d)s(?P<seq>\d+)_(?P<frame>\d+)_(?P<idx>\d+)\.(?i:jpg|jpeg|png)$"
)

JUNK_PID = -1
DISTRACTOR_PID = 0

SPLITS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}

LAYOUT_HELP = (
    "Expected the Market-1501 layout: <root>/bounding_box_train/, <root>/query/ and "
    "<root>/bounding_box_test/ holding images named like 0002_c1s1_000451_03.jpg; point root at "
    "the extracted Market-1501-v15.09.15 folder."
)


def parse_name(fname: str | os.PathLike) -> tuple[int, int, int, int, int]:
    """Parse a Market-1501 file name into ``(pid, camid0, seq, frame, bbox_idx)``.

    ``fname`` may be a bare name or a path (only the last component is parsed); camid0 is 0-based.
    """
    m = NAME_RE.match(os.path.basename(os.fspath(fname)))
    if m is None or int(m["cam"]) < 1:
        raise LayoutError(
            f"{fname}: not a Market-1501 image name. Expected PPPP_cCsS_FFFFFF_NN.jpg "
            f"(e.g. 0002_c1s1_000451_03.jpg, -1_c1s1_000401_03.jpg for junk, camera C >= 1); "
            f"rename the file or move it out of the dataset folders."
        )
    return int(m["pid"]), int(m["cam"]) - 1, int(m["seq"]), int(m["frame"]), int(m["idx"])


def format_name(pid: int, camid0: int, seq: int, frame: int, idx: int) -> str:
    """Inverse of ``parse_name``: ``format_name(2, 0, 1, 451, 3) == "0002_c1s1_000451_03.jpg"``."""
    p = "-1" if pid == JUNK_PID else f"{pid:04d}"
    return f"{p}_c{camid0 + 1}s{seq}_{frame:06d}_{idx:02d}.jpg"


def read_split(
    folder: Path,
    parse: Callable[[str], tuple],
    keep: Callable[[int], bool],
    layout_help: str,
    check_images: bool = True,
) -> list[ReidRecord]:
    """Read one split folder of a Market-style layout (shared with CUHK03-NP).

    ``parse(path) -> (pid, camid0, ...)`` reads a file name; ``keep(pid)`` says whether the image
    belongs in this split. Non-image files are ignored; records come in sorted file-name order.
    """
    if not folder.is_dir():
        raise LayoutError(f"{folder}: folder not found. {layout_help}")
    images = list_images(folder)
    if not images:
        others = sorted(e.name for e in os.scandir(folder))[:3]
        raise LayoutError(
            f"{folder}: no .jpg/.png images in this split folder"
            + (f" (found only {others}{'...' if len(others) == 3 else ''})" if others else "")
            + f". {layout_help}"
        )
    records = []
    for p in images:
        pid, camid = parse(str(p))[:2]
        if not keep(pid):
            continue
        if check_images:
            verify_image(p)
        records.append(ReidRecord(path=str(p), pid=pid, camid=camid))
    return records


def check_folders(root: Path, subfolders, layout_help: str) -> None:
    """Fail fast, before reading any image, when one of the split folders is missing."""
    for sub in subfolders:
        if not (root / sub).is_dir():
            raise LayoutError(f"{root / sub}: split folder '{sub}' not found. {layout_help}")


def _keep(split: str) -> Callable[[int], bool]:
    if split == "gallery":
        return lambda pid: pid != JUNK_PID
    return lambda pid: pid not in (JUNK_PID, DISTRACTOR_PID)


def load(root: str | os.PathLike, check_images: bool = True) -> ReidDataset:
    """Load Market-1501 from ``root`` into a ``ReidDataset(name="market1501")``.

    Raises LayoutError for a missing or empty split folder, a file name that is not a Market-1501
    name, or (with ``check_images``) an image PIL cannot open.
    """
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise LayoutError(f"{root}: folder not found. {LAYOUT_HELP}")
    check_folders(root, SPLITS.values(), LAYOUT_HELP)
    splits = {
        split: read_split(root / sub, parse_name, _keep(split), LAYOUT_HELP, check_images)
        for split, sub in SPLITS.items()
    }
    return ReidDataset(name="market1501", **splits)


__all__ = ["NAME_RE", "parse_name", "format_name", "load", "read_split", "check_folders", "SPLITS"]
