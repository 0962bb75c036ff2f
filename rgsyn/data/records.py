"""Plain records shared by every dataset layout.

Person re-id datasets are lists of `ReidRecord`; pids and camids keep the values of the on-disk names
(camid 0-based: Market-1501 `c1` is camid 0). Training code relabels pids to 0..N-1 itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class LayoutError(ValueError):
    """A dataset on disk does not have the layout we expect. The message names the file and the fix."""


@dataclass(frozen=True)
class ReidRecord:
    path: str
    pid: int
    camid: int


@dataclass(frozen=True)
class ReidDataset:
    name: str
    train: list[ReidRecord] = field(default_factory=list)
    query: list[ReidRecord] = field(default_factory=list)
    gallery: list[ReidRecord] = field(default_factory=list)

    @property
    def train_pids(self) -> list[int]:
        return sorted({r.pid for r in self.train})

    def summary(self) -> dict:
        def stats(rs):
            return {"images": len(rs), "ids": len({r.pid for r in rs}), "cams": len({r.camid for r in rs})}

        return {"train": stats(self.train), "query": stats(self.query), "gallery": stats(self.gallery)}


@dataclass(frozen=True)
class FaceDataset:
    """A face-recognition set: train images (pid = class) and verification pair files (insightface
    `.bin`): `sets` the benchmark-like ones, `groups` one per demographic group (RFW-like)."""

    name: str
    train: list[ReidRecord] = field(default_factory=list)
    sets: dict[str, str] = field(default_factory=dict)  # name -> .bin path
    groups: dict[str, str] = field(default_factory=dict)

    @property
    def train_pids(self) -> list[int]:
        return sorted({r.pid for r in self.train})

    def summary(self) -> dict:
        return {"train": {"images": len(self.train), "ids": len({r.pid for r in self.train})},
                "sets": dict(self.sets), "groups": dict(self.groups)}


def relabel(pids) -> tuple[np.ndarray, dict]:
    """Dataset pids -> contiguous class indices 0..C-1 (sorted pid order), and the pid -> index table."""
    table = {p: i for i, p in enumerate(sorted(set(pids)))}
    return np.array([table[p] for p in pids], dtype=np.int64), table


def holdout_split(records: list[ReidRecord], per_id: int, seed: int) -> tuple[list[ReidRecord], list[ReidRecord]]:
    """(members, held_out) of a train split: of every identity with ≥ 2 images, `per_id` images (never
    all of them) are held out of generator training, chosen by `seed`; the rest are members.

    Held-out images are what membership inference compares members with (rgsyn.privacy): the
    recognition models still train on every image, the generator (cold start, RL memory bank) only on
    members. Order inside each part follows `records`.
    """
    by_id: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        by_id.setdefault(r.pid, []).append(i)
    rng = np.random.default_rng([seed, 31])
    out = set()
    for pid in sorted(by_id):
        idx = by_id[pid]
        k = min(per_id, len(idx) - 1)
        if k > 0:
            out.update(rng.choice(idx, size=k, replace=False).tolist())
    return [r for i, r in enumerate(records) if i not in out], [r for i, r in enumerate(records) if i in out]
