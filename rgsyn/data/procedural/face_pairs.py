"""The embedded face dataset: a scarce CASIA-like train set and insightface-style evaluation pair sets.

Written under ``root`` (the layout of insightface's ``faces_webface_112x112`` folder, with the train
set as an image folder instead of a RecordIO pack)::

    train/id00000/0000.png ...   one folder per identity (rgsyn.data.imagefolder.load reads it)
    lfw.bin                      general pairs, mixed nuisance
    cfp_fp.bin                   frontal (|yaw| <= 9 deg) vs profile (|yaw| 66-83 deg)
    agedb_30.bin                 age gap of 27-33 years in every pair, genuine and impostor
    calfw.bin                    age gap of 10-30 years; impostors look alike (same group, nearest attributes)
    cplfw.bin                    near-frontal vs turned 43-80 deg; impostors look alike
    rfw_tone1.bin .. rfw_tone4.bin   one demographic group each (RFW-like), impostors within the group
    pairs.json                   per set and image: test identity index, yaw (deg), age (years), group
    dataset.json                 counts per split and set, groups, size, seed

Train identities are few and long-tailed (images per identity ~ n^-a on [min, max], at least 2 so
every identity can form a positive pair) and skewed across groups like web-crawled sets
(``train_group_mix``), so a model trained on them alone is imperfect and biased across groups.

Pair sets follow insightface/LFW: ``folds`` contiguous blocks of ``pairs_per_fold`` pairs, each block
half genuine then half impostor; the test identities are split between folds, so the threshold
chosen on nine folds never saw the people of the tenth.

Random streams (first two SeedSequence entries): train identities and images ``[seed, 31, ...]``,
test identities and pair images ``[seed, 32, ...]``, general-domain faces ``[seed, 33, ...]``
(``faces.render_general_faces``). Distinct streams give distinct identities, so no test or general
identity is a train identity. Every image is a pure function of (seed, identity, image index).
"""
from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rgsyn.data.procedural.faces import (FACIAL_HAIR, GLASSES, GROUPS, HAIR_STYLES, FaceIdentity,
                                         make_face_identity, render_face)
from rgsyn.data.verification import write_bin

TRAIN_STREAM, TEST_STREAM = 31, 32


@dataclass(frozen=True)
class FaceParams:
    size: int = 32  # square images; 112 for insightface-sized crops on a GPU
    num_train_ids: int = 150
    train_images_min: int = 2
    train_images_max: int = 10
    zipf_a: float = 1.2  # images per train id ~ Zipf(a) clipped to [min, max]
    train_group_mix: tuple = (0.55, 0.2, 0.15, 0.1)  # share of tone1..tone4 among train ids
    num_test_ids: int = 400  # group-balanced pool shared by all pair sets
    folds: int = 10
    pairs_per_fold: int = 60  # half genuine, half impostor
    occlusion_prob: float = 0.15


@dataclass(frozen=True)
class PairProtocol:
    name: str
    pose: str  # mixed | frontal_profile | cross_pose
    age: str  # same | gap30 | cross_age
    impostors: str  # random | similar
    group: int | None = None  # only identities of this group (RFW-like sets)


PROTOCOLS = (
    PairProtocol("lfw", "mixed", "same", "random"),
    PairProtocol("cfp_fp", "frontal_profile", "same", "random"),
    PairProtocol("agedb_30", "mixed", "gap30", "random"),
    PairProtocol("calfw", "mixed", "cross_age", "similar"),
    PairProtocol("cplfw", "cross_pose", "same", "similar"),
    *(PairProtocol(f"rfw_{g}", "mixed", "same", "random", i) for i, g in enumerate(GROUPS)),
)


def train_identity(i: int, p: FaceParams, seed: int) -> FaceIdentity:
    rng = np.random.default_rng([seed, TRAIN_STREAM, 0, i])
    mix = np.asarray(p.train_group_mix, float)
    return make_face_identity(rng, group=int(rng.choice(len(GROUPS), p=mix / mix.sum())))


def eval_identity(i: int, seed: int) -> FaceIdentity:
    """Test identity ``i``; groups cycle so the pool is balanced and every RFW-like set is full."""
    return make_face_identity(np.random.default_rng([seed, TEST_STREAM, 0, i]), group=i % len(GROUPS))


def images_per_train_id(p: FaceParams, seed: int) -> np.ndarray:
    """Long tail: P(n) ∝ n^-a on [min, max]."""
    n = np.arange(p.train_images_min, p.train_images_max + 1)
    w = n.astype(float) ** -p.zipf_a
    return np.random.default_rng([seed, TRAIN_STREAM, 2]).choice(n, size=p.num_train_ids, p=w / w.sum())


def identity_vector(ident: FaceIdentity) -> np.ndarray:
    """Attributes scaled to comparable spreads: nearest neighbours here look alike."""
    cont = [ident.tone * 4, ident.masc, ident.face_w * 30, ident.face_h * 4, ident.jaw * 5, ident.chin * 2,
            ident.eye_sep * 10, ident.eye_w * 12, ident.eye_h * 30, ident.nose_len * 6, ident.mouth_w * 6,
            ident.lip * 30, ident.brow_thick * 30, ident.base_age / 15, ident.hairline * 6]
    cats = [np.eye(len(HAIR_STYLES))[HAIR_STYLES.index(ident.hair_style)] * 1.5,
            np.eye(len(FACIAL_HAIR))[FACIAL_HAIR.index(ident.facial_hair)] * 1.5,
            np.eye(len(GLASSES))[GLASSES.index(ident.glasses)] * 1.5]
    return np.concatenate([cont, np.asarray(ident.hair) * 3, np.asarray(ident.iris) * 2, *cats])


def encode_png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _choose_pairs(proto: PairProtocol, idents: list[FaceIdentity], p: FaceParams, rng) -> list[tuple[int, int]]:
    """(a, b) test identity indices for every pair, fold by fold: genuine half first, then impostors."""
    pool = [i for i in range(len(idents)) if proto.group is None or i % len(GROUPS) == proto.group]
    parts = np.array_split(rng.permutation(pool), p.folds)
    if min(len(part) for part in parts) < 2:
        raise ValueError(f"face params: {proto.name} needs >= 2 test identities per fold; it has {len(pool)} for "
                         f"{p.folds} folds. Raise num_test_ids (RFW-like sets use a quarter of them).")
    vecs = np.stack([identity_vector(x) for x in idents])
    half = p.pairs_per_fold // 2
    pairs = []
    for part in parts:
        order = rng.permutation(part)
        pairs += [(int(order[j % len(order)]), int(order[j % len(order)])) for j in range(half)]
        for j in range(half):
            a = int(order[(j + half) % len(order)])
            others = np.array([b for b in part if b != a])
            if proto.impostors == "similar":  # same group and sex-like look first, then the nearest attributes
                key = [(idents[b].group != idents[a].group) * 100 + (abs(idents[b].masc - idents[a].masc) > 0.5) * 10
                       + np.linalg.norm(vecs[b] - vecs[a]) for b in others]
                others = others[np.argsort(key)[:3]]
            pairs.append((a, int(rng.choice(others))))
    return pairs


def _conditions(proto: PairProtocol, a: FaceIdentity, b: FaceIdentity, rng) -> tuple[list, list]:
    """([yaw_a, yaw_b] in radians, [age_a, age_b] in years) for one pair."""
    if proto.pose == "frontal_profile":  # CFP-FP: the frontal image first
        yaws = [rng.uniform(-0.15, 0.15), rng.choice([-1, 1]) * rng.uniform(1.15, 1.45)]
    elif proto.pose == "cross_pose":
        yaws = [rng.uniform(-0.3, 0.3), rng.choice([-1, 1]) * rng.uniform(0.75, 1.4)]
        yaws = yaws if rng.random() < 0.5 else yaws[::-1]
    else:
        yaws = list(np.clip(rng.normal(0, 0.3, 2), -1.0, 1.0))
    if proto.age == "same":
        ages = [a.base_age + rng.normal(0, 2.5), b.base_age + rng.normal(0, 2.5)]
    else:
        young = rng.uniform(16, 45) if proto.age == "gap30" else rng.uniform(16, 50)
        gap = rng.uniform(27, 33) if proto.age == "gap30" else rng.uniform(10, 30)
        ages = [young, young + gap] if rng.random() < 0.5 else [young + gap, young]
    return [float(y) for y in yaws], [float(np.clip(x, 12, 90)) for x in ages]


def render_pair_set(proto: PairProtocol, p: FaceParams, seed: int) -> tuple[list[bytes], list[bool], dict]:
    """One verification set -> (bins: 2N PNG bytes, issame: N bools, meta: per-image conditions)."""
    if p.pairs_per_fold % 2:
        raise ValueError(f"face params: pairs_per_fold={p.pairs_per_fold} must be even (half genuine, half impostor)")
    s = PROTOCOLS.index(proto)
    idents = [eval_identity(i, seed) for i in range(p.num_test_ids)]
    pairs = _choose_pairs(proto, idents, p, np.random.default_rng([seed, TEST_STREAM, 3, s]))
    bins, issame = [], []
    meta = {"identity": [], "yaw": [], "age": [], "group": []}
    for k, (a, b) in enumerate(pairs):
        yaws, ages = _conditions(proto, idents[a], idents[b], np.random.default_rng([seed, TEST_STREAM, 2, s, k]))
        for side, (i, yaw, age) in enumerate(zip((a, b), yaws, ages)):
            r = np.random.default_rng([seed, TEST_STREAM, 1, s, k, side])
            img = render_face(idents[i], r, p.size, yaw=yaw, age=age, occlusion_prob=p.occlusion_prob)
            bins.append(encode_png(img))
            meta["identity"].append(i)
            meta["yaw"].append(round(float(np.degrees(yaw)), 1))
            meta["age"].append(round(age, 1))
            meta["group"].append(idents[i].group)
        issame.append(a == b)
    return bins, issame, meta


def render_face_dataset(root: str | Path, p: FaceParams = FaceParams(), seed: int = 0) -> dict:
    """Write the train image folder, every pair set and the summaries under ``root``; returns the summary."""
    root = Path(root)
    train = root / "train"
    train.mkdir(parents=True, exist_ok=True)
    for d in train.glob("id*"):  # a rerun replaces, never mixes, renders
        for f in d.glob("*.png"):
            f.unlink()
        d.rmdir()
    counts = images_per_train_id(p, seed)
    groups = {g: 0 for g in GROUPS}
    for i, n in enumerate(counts):
        ident = train_identity(i, p, seed)
        groups[ident.group] += 1
        d = train / f"id{i:05d}"
        d.mkdir()
        for k in range(int(n)):
            img = render_face(ident, np.random.default_rng([seed, TRAIN_STREAM, 1, i, k]), p.size,
                              occlusion_prob=p.occlusion_prob)
            Image.fromarray(img).save(d / f"{k:04d}.png")
    sets, metas = {}, {}
    for proto in PROTOCOLS:
        bins, issame, meta = render_pair_set(proto, p, seed)
        write_bin(root / f"{proto.name}.bin", bins, issame)
        metas[proto.name] = meta
        sets[proto.name] = {"pairs": len(issame), "genuine": int(sum(issame)), "folds": p.folds,
                            "identities": len(set(meta["identity"]))}
    (root / "pairs.json").write_text(json.dumps(metas, separators=(",", ":")))
    summary = {"seed": seed, "size": p.size, "groups": list(GROUPS), "params": asdict(p),
               "train": {"identities": int(len(counts)), "images": int(counts.sum()),
                         "images_per_id": np.bincount(counts).tolist(), "groups": groups},
               "pair_sets": sets}
    (root / "dataset.json").write_text(json.dumps(summary, indent=1))
    return summary
