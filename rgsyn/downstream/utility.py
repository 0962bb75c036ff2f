"""The utility check: does the synthetic data help on the user's own data? Measured on the train split
alone, never the test set.

The train identities a validation can use (re-id: images from two cameras; faces: two images) are split
into `utility.folds` disjoint folds drawn by `utility.seed`, and each fold is held out once as a
validation set while every other train identity is trained on. Re-id: every held-out image is a query
against all the others under the Market-1501 rule (an image's own camera is junk, so an image never
finds itself). Faces: every genuine pair of a held-out identity's images and as many impostor pairs,
insightface's 10-fold verification accuracy. In each fold the downstream trainer runs twice per seed of
`utility.seeds`: real only, and real + the synthetic samples of the trained identities exactly as the
`downstream` stage mixes and selects them. The paired difference over all folds × seeds pairs with its
t-interval is the verdict: `helps` when the interval lies above zero, `hurts` when it lies below,
`inconclusive` otherwise; `pairs_needed` is how many pairs at the observed spread would resolve the
observed mean. With `downstream.require_gain` the downstream stage ships the real-only model when the
verdict is `hurts`.
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


def eligible_ids(train: list[ReidRecord], cameras: bool = True) -> list[int]:
    """The identities a validation can use, sorted: images from at least two cameras (re-id: a query
    must find its identity in another camera), or at least two images (faces)."""
    seen: dict[int, list[ReidRecord]] = {}
    for r in train:
        seen.setdefault(r.pid, []).append(r)
    usable = (lambda rs: len({r.camid for r in rs}) >= 2) if cameras else (lambda rs: len(rs) >= 2)
    return sorted(q for q, rs in seen.items() if usable(rs))


def fold_ids(train: list[ReidRecord], folds: int, seed: int, cameras: bool = True) -> list[list[int]]:
    """The eligible identities (eligible_ids) in `folds` disjoint folds of near-equal size, drawn by
    `seed`: every eligible identity is in exactly one fold. Each fold holds at least 2 identities."""
    eligible = eligible_ids(train, cameras)
    if folds < 2:
        raise ValueError(f"params.yaml: utility.folds = {folds}; the check needs at least 2 folds")
    if len(eligible) < 2 * folds:
        raise ValueError(f"params.yaml: utility.folds = {folds} leaves fewer than 2 usable identities in a fold "
                         f"({len(eligible)} usable); lower utility.folds")
    order = np.random.default_rng([seed, 17]).permutation(eligible).tolist()
    return [sorted(order[f::folds]) for f in range(folds)]


def validation_split(train: list[ReidRecord], folds: int, fold: int, seed: int,
                     cameras: bool = True) -> tuple[list[ReidRecord], list[ReidRecord]]:
    """(records of the identities trained on, records of fold `fold`'s identities): fold_ids' fold
    held out, every other train identity (the non-eligible ones too) trained on."""
    if not 0 <= fold < folds:
        raise ValueError(f"utility fold {fold}: one of 0 .. {folds - 1}")
    held = set(fold_ids(train, folds, seed, cameras)[fold])
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


def pairs_path(work: str | Path, fold: int) -> Path:
    """The face pair set of one fold of the check."""
    return Path(work or ".") / f"utility-pairs-{fold}.bin"


def check_dataset(ds: ReidDataset | FaceDataset, folds: int, fold: int, seed: int, work: str | Path = "",
                  write: bool = False):
    """Fold `fold` of the train split as a data set of its own: train = every identity outside the
    fold; re-id: query = gallery = the fold's images; faces: one pair set of the fold's identities,
    `work`/utility-pairs-<fold>.bin, written when `write` (once per check, before its trainings read it)."""
    if isinstance(ds, FaceDataset):
        kept, held = validation_split(ds.train, folds, fold, seed, cameras=False)
        path = pairs_path(work, fold)
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bin(path, *face_pairs(held, seed))
        elif not path.exists():
            raise FileNotFoundError(f"{path}: the utility check's face pairs are missing; build them first "
                                    f"with rgsyn.downstream.utility.dataset(params, fold, write=True)")
        return FaceDataset(f"{ds.name}-utility-{fold}", train=kept, sets={"utility": str(path)})
    kept, held = validation_split(ds.train, folds, fold, seed)
    return ReidDataset(f"{ds.name}-utility-{fold}", train=kept, query=held, gallery=held)


def dataset(p: Params, fold: int, write: bool = False) -> ReidDataset | FaceDataset:
    """Fold `fold`'s data set of the params' train split (check_dataset); `write` builds its face pairs."""
    from rgsyn.data.layouts import read_index

    return check_dataset(read_index(p.data.index), p.utility.folds, fold, p.utility.seed, work_dir(p), write)


def datasets(p: Params, write: bool = False) -> list[ReidDataset | FaceDataset]:
    """Every fold's data set (dataset); `write` builds the face pairs of all folds (once per check)."""
    from rgsyn.data.layouts import read_index

    ds = read_index(p.data.index)
    return [check_dataset(ds, p.utility.folds, f, p.utility.seed, work_dir(p), write) for f in range(p.utility.folds)]


def restrict(syn: Synthetic | None, pids) -> Synthetic | None:
    """The synthetic samples of the identities in `pids` (the held-out identities are unseen classes)."""
    if syn is None:
        return None
    keep = set(pids)
    rows = [i for i, q in enumerate(syn.pids) if q in keep]
    return Synthetic(syn.images[rows], [syn.pids[i] for i in rows]) if rows else None


ARMS = ("real_only", "full")


def train_arm(p: Params, arm: str, fold: int, seed: int, threads: int = 0) -> dict:
    """One arm of the check, one fold, one seed: the downstream trainer on the identities outside the
    fold, real only or with their synthetic samples as the `downstream` stage mixes them; evaluated on
    the fold's identities (faces: the pairs `datasets(p, write=True)` built). -> metrics"""
    import torch

    from rgsyn.downstream.common import load_synthetic, trainer_for

    if arm not in ARMS:
        raise ValueError(f"utility arm {arm!r}: one of {ARMS}")
    ds = dataset(p, fold)
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
    """Where the check keeps what it builds (the face pair sets, one per fold): beside its metrics file."""
    return Path(p.utility.metrics).with_suffix("")


def pairs_needed(diffs, level: float = 0.95, limit: int = 1_000_000) -> float | int | None:
    """The smallest n at which a t-interval at `level` over n paired differences with the observed
    mean and sample std excludes zero: t_{(1+level)/2, n−1} · sd / √n < |mean|. None when the mean is 0
    (no n resolves it), 2 when the differences are constant and non-zero, inf past `limit`."""
    from scipy import stats as st

    d = np.asarray(diffs, np.float64)
    mean, sd = abs(float(d.mean())), float(d.std(ddof=1)) if len(d) > 1 else float("nan")
    if mean == 0 or not np.isfinite(sd):
        return None
    if sd == 0:
        return 2
    q = 0.5 + level / 2
    ok = lambda n: st.t.ppf(q, n - 1) * sd / np.sqrt(n) < mean  # noqa: E731  (monotone in n)
    hi = 2
    while not ok(hi):
        if hi > limit:
            return float("inf")
        hi *= 2
    lo = hi // 2  # ok(hi), not ok(lo) unless hi == 2
    if ok(lo):
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def power_note(n: int, need) -> str:
    """One line on the check's power: whether the pairs it trained resolve the observed difference."""
    if need is None:
        return f"{n} pairs; the observed mean difference is 0: no number of pairs resolves it"
    if need == float("inf"):
        return f"{n} pairs; the observed difference is too small for its spread to resolve at any practical number of pairs"
    if need <= n:
        return f"{n} pairs resolve the observed difference at its spread (about {need} would)"
    return (f"{n} pairs do not resolve the observed difference; about {need} pairs at the observed spread would "
            f"(raise utility.folds and utility.seeds)")


def summarize(p: Params, per_pair: list[dict]) -> dict:
    """metrics/utility.json: every (fold, seed) pair's values of both arms, the paired difference over
    all pairs with its t-interval, the verdict, the pairs that would resolve the observed difference and
    what each fold trained and validated on."""
    sets = datasets(p)
    face = isinstance(sets[0], FaceDataset)
    metric = "avg_acc" if face else "mAP"
    real = [m["real_only"][metric] for m in per_pair]
    full = [m["full"][metric] for m in per_pair]
    d = stats.paired_t(real, full)
    diffs = np.subtract(full, real)
    need = pairs_needed(diffs)
    d["sd"] = float(diffs.std(ddof=1)) if len(diffs) > 1 else float("nan")
    per_fold = [{"fold": f, "train": {"identities": len({r.pid for r in ds.train}), "images": len(ds.train)},
                 "validation": ({"pairs": len(read_bin(ds.sets["utility"])[1])} if face else
                                {"identities": len({r.pid for r in ds.query}), "images": len(ds.query)})}
                for f, ds in enumerate(sets)]
    mean_of = lambda key, part: float(np.mean([x[part][key] for x in per_fold]))  # noqa: E731
    return {"metric": metric, "folds": p.utility.folds, "seeds": list(p.utility.seeds), "pairs": len(per_pair),
            "values": [{"fold": m["fold"], "seed": m["seed"], "real": m["real_only"][metric], "synthetic": m["full"][metric]}
                       for m in per_pair],
            "real_only": real, "full": full,
            "diff": d, "interval": "t, 95 %", "verdict": verdict(d),
            "pairs_needed": need if need is None or np.isfinite(need) else None,  # JSON: null when none resolves it
            "power": power_note(len(per_pair), need),
            "train": {k: mean_of(k, "train") for k in per_fold[0]["train"]},
            "validation": {k: mean_of(k, "validation") for k in per_fold[0]["validation"]},
            "per_fold": per_fold, "split_seed": p.utility.seed, "per_pair": per_pair}


def read_verdict(path: str | Path) -> str | None:
    """The verdict of a utility check's metrics file, None when there is none."""
    path = Path(path)
    return json.loads(path.read_text())["verdict"] if path.exists() else None
