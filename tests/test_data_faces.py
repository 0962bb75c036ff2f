"""The embedded face dataset: determinism, layout, pair-set protocols, disjoint streams, identity signal."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from rgsyn.data import imagefolder
from rgsyn.data.procedural.face_pairs import (PROTOCOLS, FaceParams, identity_vector, images_per_train_id,
                                              render_face_dataset, eval_identity, render_pair_set, train_identity)
from rgsyn.data.procedural.faces import GENERAL_STREAM, GROUPS, make_face_identity, render_face, render_general_faces
from rgsyn.data.verification import read_bin

TINY = FaceParams(size=16, num_train_ids=8, train_images_min=2, train_images_max=4, num_test_ids=80,
                  folds=10, pairs_per_fold=4)


def _digest(root):
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode() + f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    return root, render_face_dataset(root, TINY, seed=3)


def test_deterministic_by_seed(dataset, tmp_path):
    root, summary = dataset
    again = render_face_dataset(tmp_path / "again", TINY, seed=3)
    assert again == summary and _digest(tmp_path / "again") == _digest(root)
    render_face_dataset(tmp_path / "other", TINY, seed=4)
    assert _digest(tmp_path / "other") != _digest(root)
    render_face_dataset(tmp_path / "again", TINY, seed=3)  # a rerun over an old render replaces it
    assert _digest(tmp_path / "again") == _digest(root)


def test_train_is_a_long_tailed_image_folder(dataset):
    root, summary = dataset
    samples, classes = imagefolder.load(root / "train")
    assert classes == [f"id{i:05d}" for i in range(TINY.num_train_ids)]
    per_id = Counter(c for _, c in samples)
    counts = images_per_train_id(TINY, 3)
    assert [per_id[i] for i in range(len(classes))] == counts.tolist()
    assert min(per_id.values()) >= 2 and max(per_id.values()) <= TINY.train_images_max
    on_disk = json.loads((root / "dataset.json").read_text())
    assert summary["train"]["images"] == len(samples) == on_disk["train"]["images"]
    from PIL import Image

    with Image.open(samples[0][0]) as im:
        assert im.size == (16, 16)
    # the long tail itself, on many identities
    n = images_per_train_id(dataclasses.replace(TINY, num_train_ids=3000, train_images_max=10), 0)
    frac = np.bincount(n, minlength=11)[2:] / len(n)
    assert frac[0] > 0.25 and frac[0] > 4 * frac[-1]


def test_pair_sets_have_balanced_folds_and_their_conditions(dataset):
    root, summary = dataset
    meta = json.loads((root / "pairs.json").read_text())
    half = TINY.pairs_per_fold // 2
    for proto in PROTOCOLS:
        bins, issame = read_bin(root / f"{proto.name}.bin")
        assert len(issame) == TINY.folds * TINY.pairs_per_fold == summary["pair_sets"][proto.name]["pairs"]
        for f in range(TINY.folds):  # fold f: a contiguous block, genuine half then impostor half
            assert issame[f * TINY.pairs_per_fold:(f + 1) * TINY.pairs_per_fold] == [True] * half + [False] * half
        m = {k: np.asarray(v) for k, v in meta[proto.name].items()}
        a, b = m["identity"][0::2], m["identity"][1::2]
        assert ((a == b) == np.asarray(issame)).all()
        fold_ids = [set(m["identity"][2 * f * TINY.pairs_per_fold:2 * (f + 1) * TINY.pairs_per_fold])
                    for f in range(TINY.folds)]
        assert sum(len(s) for s in fold_ids) == len(set().union(*fold_ids))  # no person in two folds
        yaw, age = np.abs(m["yaw"]), m["age"]
        if proto.name == "cfp_fp":
            assert (yaw[0::2] <= 9).all() and (yaw[1::2] >= 65).all()
        if proto.name == "cplfw":
            lo, hi = np.minimum(yaw[0::2], yaw[1::2]), np.maximum(yaw[0::2], yaw[1::2])
            assert (lo <= 18).all() and (hi >= 42).all()
        if proto.name == "agedb_30":
            assert (np.abs(age[0::2] - age[1::2]) >= 26.9).all()
        if proto.name == "calfw":
            assert (np.abs(age[0::2] - age[1::2]) >= 9.9).all()
        if proto.group is not None:
            assert set(m["group"]) == {GROUPS[proto.group]}
        else:
            assert set(m["group"]) == set(GROUPS)


def test_identity_streams_are_disjoint():
    train = [train_identity(i, TINY, 0) for i in range(30)]
    test = [eval_identity(i, 0) for i in range(30)]
    general = [make_face_identity(np.random.default_rng([0, GENERAL_STREAM, 0, c])) for c in range(30)]
    vecs = np.stack([identity_vector(x) for x in train + test + general])
    d = np.linalg.norm(vecs[:, None] - vecs[None], axis=-1) + np.eye(len(vecs)) * 1e9
    assert d.min() > 0.1
    x, y = render_general_faces(3, 2, 16, seed=0)
    assert x.shape == (6, 3, 16, 16) and str(x.dtype) == "torch.uint8" and y.tolist() == [0, 0, 1, 1, 2, 2]
    assert (render_general_faces(3, 2, 16, seed=0)[0] == x).all()


def test_identity_signal_and_sizes():
    ids = [make_face_identity(np.random.default_rng([5, i])) for i in range(16)]

    def img(ident, k, **kw):
        return render_face(ident, np.random.default_rng([6, k]), 32, occlusion_prob=0, **kw).astype(float)

    same = [np.abs(img(x, i, yaw=0.0, age=40) - img(x, i, yaw=0.35, age=40)).mean() for i, x in enumerate(ids)]
    diff = [np.abs(img(x, i, yaw=0.0, age=40) - img(ids[(i + 1) % 16], i, yaw=0.0, age=40)).mean()
            for i, x in enumerate(ids)]
    assert np.mean(same) < 0.7 * np.mean(diff)
    big = render_face(ids[0], np.random.default_rng(0), 112, yaw=1.3)
    assert big.shape == (112, 112, 3) and big.dtype == np.uint8 and big.std() > 10


def test_bad_params_are_named():
    with pytest.raises(ValueError, match="pairs_per_fold"):
        render_pair_set(PROTOCOLS[0], dataclasses.replace(TINY, pairs_per_fold=5), 0)
    with pytest.raises(ValueError, match="num_test_ids"):
        render_pair_set(PROTOCOLS[-1], dataclasses.replace(TINY, num_test_ids=20), 0)
