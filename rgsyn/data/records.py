"""Plain records shared by every dataset layout.

Person re-id datasets are lists of `ReidRecord`; pids and camids keep the values of the on-disk names
(camid 0-based: Market-1501 `c1` is camid 0). Training code relabels pids to 0..N-1 itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field


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
