"""CUHK03-NP: CUHK03 under the "new protocol" of Zhong et al., CVPR 2017 (k-reciprocal re-ranking).

767 identities for training and 700 for testing; the test images are split Market-style into one
query image per camera per identity and a gallery holding the rest. The widely distributed copy
(linked from github.com/zhunzhong07/person-re-ranking/tree/master/CUHK03-NP) has two variants, with
boxes drawn by hand ("labeled") or by a detector ("detected"):

    <root>/                       (usually named cuhk03-np/)
        labeled/
            bounding_box_train/   0001_c1_1.png 0001_c1_2.png ... 0001_c2_6.png ...   -> train
            query/                0003_c1_22.png 0003_c2_27.png ...                  -> query
            bounding_box_test/    0003_c1_21.png 0003_c1_23.png ...                  -> gallery
        detected/
            (same three folders)

File names are ``PPPP_cC_N.png``: ``PPPP`` person id (4 digits), ``C`` camera (1 or 2; our camid is
0-based, ``c1`` -> 0), ``N`` running image number of that person (not zero-padded). This is the
naming that re-id code bases read with the Market-style pattern ``([-\\d]+)_c(\\d)`` on ``*.png``
with ``1 <= camid <= 2``. ``-1`` (junk) never occurs in CUHK03-NP but is dropped like in Market; the
per-split rules are Market's (``market1501.read_split``).

``root`` may be the folder holding ``labeled/`` and ``detected/`` or the variant folder itself.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .market1501 import SPLITS, check_folders, read_split
from .records import LayoutError, ReidDataset

NUM_TRAIN_IDS = 767
NUM_TEST_IDS = 700
VARIANTS = ("labeled", "detected")
JUNK_PID = -1

NAME_RE = re.compile(r"^(?P<pid>-1|\d+)_c(?P<cam>\d)_(?P<idx>\d+)\.(?i:png|jpg|jpeg)$")

LAYOUT_HELP = (
    "Expected the CUHK03-NP layout: <root>/{labeled,detected}/{bounding_box_train,query,"
    "bounding_box_test}/ holding images named like 0001_c1_1.png; point root at the cuhk03-np "
    "folder (or at its labeled/ or detected/ folder)."
)


def parse_name(fname: str | os.PathLike) -> tuple[int, int, int]:
    """Parse a CUHK03-NP file name ``PPPP_cC_N.png`` into ``(pid, camid0, image_number)``."""
    m = NAME_RE.match(os.path.basename(os.fspath(fname)))
    if m is None or int(m["cam"]) not in (1, 2):
        raise LayoutError(
            f"{fname}: not a CUHK03-NP image name. Expected PPPP_cC_N.png with camera C in 1..2 "
            f"(e.g. 0001_c1_1.png); rename the file or move it out of the dataset folders."
        )
    return int(m["pid"]), int(m["cam"]) - 1, int(m["idx"])


def format_name(pid: int, camid0: int, idx: int, ext: str = ".png") -> str:
    """Inverse of ``parse_name``: ``format_name(1, 0, 1) == "0001_c1_1.png"``."""
    return f"{pid:04d}_c{camid0 + 1}_{idx}{ext}"


def _child(folder: Path, name: str) -> Path | None:
    """The sub-folder of ``folder`` called ``name``, matched case-insensitively (some copies ship
    ``Labeled/``)."""
    exact = folder / name
    if exact.is_dir():
        return exact
    for e in os.scandir(folder):
        if e.is_dir() and e.name.lower() == name:
            return Path(e.path)
    return None


def resolve_root(root: str | os.PathLike, variant: str) -> Path:
    """The folder that holds the three split folders of ``variant``."""
    if variant not in VARIANTS:
        raise ValueError(f"CUHK03-NP variant must be one of {VARIANTS}, got {variant!r}")
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise LayoutError(f"{root}: folder not found. {LAYOUT_HELP}")
    sub = _child(root, variant)
    if sub is not None:
        return sub
    if (root / SPLITS["train"]).is_dir():  # root already is a variant folder
        if root.name.lower() in VARIANTS and root.name.lower() != variant:
            raise LayoutError(
                f"{root}: this is the '{root.name}' variant folder but variant={variant!r} was "
                f"asked for; pass its parent folder or variant={root.name.lower()!r}."
            )
        return root
    raise LayoutError(f"{root / variant}: variant folder '{variant}' not found. {LAYOUT_HELP}")


def _not_junk(pid: int) -> bool:
    return pid != JUNK_PID


def load(root: str | os.PathLike, variant: str = "labeled", check_images: bool = True) -> ReidDataset:
    """Load one CUHK03-NP variant into ``ReidDataset(name=f"cuhk03np-{variant}")``.

    Same error rules as Market-1501: a missing or empty split folder, a bad file name or (with
    ``check_images``) an unreadable image raises LayoutError naming the folder or file.
    """
    base = resolve_root(root, variant)
    check_folders(base, SPLITS.values(), LAYOUT_HELP)
    splits = {
        split: read_split(base / sub, parse_name, _not_junk, LAYOUT_HELP, check_images)
        for split, sub in SPLITS.items()
    }
    return ReidDataset(name=f"cuhk03np-{variant}", **splits)


def check_protocol(ds: ReidDataset) -> list[str]:
    """Warnings (empty list if none) where ``ds`` differs from the 767/700 CUHK03-NP protocol."""
    warnings = []
    n_train = len({r.pid for r in ds.train})
    test_ids = {r.pid for r in ds.query} | {r.pid for r in ds.gallery}
    if n_train != NUM_TRAIN_IDS:
        warnings.append(f"{ds.name}: {n_train} train identities, the protocol has {NUM_TRAIN_IDS}")
    if len(test_ids) != NUM_TEST_IDS:
        warnings.append(
            f"{ds.name}: {len(test_ids)} test identities (query+gallery), the protocol has "
            f"{NUM_TEST_IDS}"
        )
    overlap = {r.pid for r in ds.train} & test_ids
    if overlap:
        warnings.append(f"{ds.name}: {len(overlap)} identities are in both train and test")
    missing = {r.pid for r in ds.query} - {r.pid for r in ds.gallery}
    if missing:
        warnings.append(f"{ds.name}: {len(missing)} query identities have no gallery image")
    return warnings
