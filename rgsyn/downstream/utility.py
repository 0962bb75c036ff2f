"""The utility check: does the synthetic data help on the user's own data? Measured on the train split
alone, never the test set.

A share of the train identities (`utility.val_share`) is held out as a validation set. Re-id: among the
identities with images from two cameras, every held-out image is a query against all the others under
the Market-1501 rule (an image's own camera is junk, so an image never finds itself). Faces: every
genuine pair of a held-out identity's images and as many impostor pairs, insightface's 10-fold
verification accuracy. The downstream
trainer then runs twice per seed on the remaining identities: real only, and real + the synthetic
samples of those identities exactly as the `downstream` stage mixes and selects them. The paired
difference over `utility.seeds` with its t-interval is the verdict: `helps` when the interval lies above
zero, `hurts` when it lies below, `inconclusive` otherwise. With `downstream.require_gain` the
downstream stage ships the real-only model when the verdict is `hurts`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rgsyn import stats
from rgsyn.config import Params
from rgsyn.data.records import FaceDataset, ReidDataset, ReidRecord
from rgsyn.data.verification import read_bin, write_bin
from rgsyn.downstream.trainer import Synthetic

VERDICTS = ("helps", "hurts", "inconclusive")


def validation_split(train: list[ReidRecord], share: float, seed: int,
                     cameras: bool = True) -> tuple[list[ReidRecord], list[ReidRecord]]:
    """(records of the identities trained on, records of the held-out identities): round(share · #ids)
    identities drawn by `seed` among those a validation can use: images from at least two cameras
    (re-id: a query must find its identity in another camera), or at least two images (faces)."""
    seen: dict[int, list[ReidRecord]] = {}
    for r in train:
        seen.setdefault(r.pid, []).append(r)
    usable = (lambda rs: len({r.camid for r in rs}) >= 2) if cameras else (lambda rs: len(rs) >= 2)
    eligible = sorted(q for q, rs in seen.items() if usable(rs))
    k = min(len(eligible), round(share * len(seen)))
    if k < 2:
        raise ValueError(f"params.yaml: utility.val_share = {share} holds out {k} usable identities (of "
                         f"{len(eligible)}); the check needs at least 2: raise utility.val_share")
    held = set(np.random.default_rng([seed, 17]).choice(eligible, k, replace=False).tolist())
    return [r for r in train if r.pid not in held], [r for r in train if r.pid in held]


def face_pairs(held: list[ReidRecord], seed: int) -> tuple[list[bytes], list[bool]]:
    """Verification pairs of the held-out face identities (insightface .bin content): every genuine pair
    of an identity's images and as many impostor pairs, each genuine pair's first image against a
    random image of another held-out identity."""
    rng = np.random.default_rng([seed, 23])
    by_id: dict[int, list[str]] = {}
    for r in held:
        by_id.setdefault(r.pid, []).append(r.path)
    ids = sorted(by_id)
    pairs: list[tuple[str, str, bool]] = []
    for q in ids:
        imgs = by_id[q]
        for i in range(len(imgs)):
            for j in range(i + 1, len(imgs)):
                other = by_id[ids[(ids.index(q) + 1 + rng.integers(len(ids) - 1)) % len(ids)]]
                pairs += [(imgs[i], imgs[j], True), (imgs[i], other[rng.integers(len(other))], False)]
    bins = [Path(x).read_bytes() for a, b, _ in pairs for x in (a, b)]
    return bins, [same for _, _, same in pairs]


def check_dataset(ds: ReidDataset | FaceDataset, share: float, seed: int, work: str | Path = "",
                  write: bool = False):
    """The train split as a data set of its own: train = the kept identities; re-id: query = gallery =
    the held-out identities' images; faces: one pair set of the held-out identities,
    `work`/utility-pairs.bin, written when `write` (once per check, before its trainings read it)."""
    if isinstance(ds, FaceDataset):
        kept, held = validation_split(ds.train, share, seed, cameras=False)
        path = Path(work or ".") / "utility-pairs.bin"
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bin(path, *face_pairs(held, seed))
        elif not path.exists():
            raise FileNotFoundError(f"{path}: the utility check's face pairs are missing; build them first "
                                    f"with rgsyn.downstream.utility.dataset(params, write=True)")
        return FaceDataset(f"{ds.name}-utility", train=kept, sets={"utility": str(path)})
    kept, held = validation_split(ds.train, share, seed)
    return ReidDataset(f"{ds.name}-utility", train=kept, query=held, gallery=held)


def dataset(p: Params, write: bool = False) -> ReidDataset | FaceDataset:
    """The check's data set of the params' train split (check_dataset); `write` builds the face pairs."""
    from rgsyn.data.layouts import read_index

    return check_dataset(read_index(p.data.index), p.utility.val_share, p.utility.seed, work_dir(p), write)


def restrict(syn: Synthetic | None, pids) -> Synthetic | None:
    """The synthetic samples of the identities in `pids` (the held-out identities are unseen classes)."""
    if syn is None:
        return None
    keep = set(pids)
    rows = [i for i, q in enumerate(syn.pids) if q in keep]
    return Synthetic(syn.images[rows], [syn.pids[i] for i in rows]) if rows else None


ARMS = ("real_only", "full")


def train_arm(p: Params, arm: str, seed: int, threads: int = 0) -> dict:
    """One arm of the check, one seed: the downstream trainer on the check's train identities, real only
    or with their synthetic samples as the `downstream` stage mixes them; evaluated on the held-out
    identities (faces: the pairs `dataset(p, write=True)` built). -> metrics"""
    import torch

    from rgsyn.downstream.run import load_synthetic, trainer_for

    if arm not in ARMS:
        raise ValueError(f"utility arm {arm!r}: one of {ARMS}")
    ds = dataset(p)
    dp = p.downstream
    syn = restrict(load_synthetic(p)[0], {r.pid for r in ds.train}) if arm == "full" else None
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:  # the caller's thread count is restored: an in-process run must not change later numerics
        _, m = trainer_for(ds, dp.train, "downstream.train")(ds, dp.train, seed, progress=False, synthetic=syn,
                                                              mix=dp.mix if syn is not None else None,
                                                              selection=dp.selection, compute=p.compute)
    finally:
        torch.set_num_threads(before)
    return m


def verdict(d: dict) -> str:
    """helps / hurts / inconclusive from a paired difference's interval."""
    if d["ci_low"] > 0:
        return "helps"
    if d["ci_high"] < 0:
        return "hurts"
    return "inconclusive"


def work_dir(p: Params) -> Path:
    """Where the check keeps what it builds (the face pair set): beside its metrics file."""
    return Path(p.utility.metrics).with_suffix("")


def summarize(p: Params, per_seed: list[dict]) -> dict:
    """metrics/utility.json: per-seed values of both arms, the paired difference with its t-interval,
    the verdict and what the check trained and validated on."""
    ds = dataset(p)
    face = isinstance(ds, FaceDataset)
    metric = "avg_acc" if face else "mAP"
    real = [m["real_only"][metric] for m in per_seed]
    full = [m["full"][metric] for m in per_seed]
    d = stats.paired_t(real, full)
    return {"metric": metric, "seeds": [m["seed"] for m in per_seed], "real_only": real, "full": full,
            "diff": d, "interval": "t, 95 %", "verdict": verdict(d),
            "train": {"identities": len({r.pid for r in ds.train}), "images": len(ds.train)},
            "validation": ({"pairs": len(read_bin(ds.sets["utility"])[1])} if face else
                           {"identities": len({r.pid for r in ds.query}), "images": len(ds.query)}),
            "val_share": p.utility.val_share, "split_seed": p.utility.seed,
            "per_seed": per_seed}


def read_verdict(path: str | Path) -> str | None:
    """The verdict of a utility check's metrics file, None when there is none."""
    path = Path(path)
    return json.loads(path.read_text())["verdict"] if path.exists() else None
