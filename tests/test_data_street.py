import dataclasses
import hashlib
import itertools
from collections import defaultdict

import numpy as np
from PIL import Image

from rgsyn.data.layouts import load_reid
from rgsyn.data.procedural.render_street import (
    SCENES, StreetParams, make_catalogue, make_street_camera, make_walker, render_street,
    render_street_image, train_counts,
)

# small enough for seconds of CPU, but with the default cameras and test images per identity
SMALL = StreetParams(num_train_ids=12, num_test_ids=6, num_distractors=5)


def _digest(root):
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.jpg")):
        h.update(f.parent.name.encode() + f.name.encode() + f.read_bytes())
    return h.hexdigest()


def test_deterministic_and_rerun_replaces(tmp_path):
    render_street(tmp_path / "a", dataclasses.replace(SMALL, num_train_ids=15), seed=1)  # leftovers to replace
    sa = render_street(tmp_path / "a", SMALL, seed=0)
    sb = render_street(tmp_path / "b", SMALL, seed=0)
    assert sa == sb and _digest(tmp_path / "a") == _digest(tmp_path / "b")
    render_street(tmp_path / "c", SMALL, seed=1)
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_market_layout_split_and_size(tmp_path):
    p = SMALL
    s = render_street(tmp_path, p, seed=0)
    ds = load_reid(tmp_path, "market1501")
    train = defaultdict(int)
    for r in ds.train:
        train[r.pid] += 1
    assert len(train) == p.num_train_ids
    assert min(train.values()) >= p.train_images_min and max(train.values()) <= p.train_images_max
    assert len(ds.train) == s["bounding_box_train"] == int(train_counts(p, np.random.default_rng(0)).sum())

    query, gallery = defaultdict(list), defaultdict(list)
    for r in ds.query:
        query[r.pid].append(r.camid)
    for r in ds.gallery:
        gallery[r.pid].append(r.camid)
    assert len(query) == p.num_test_ids and not set(query) & set(train)  # disjoint from train
    for pid, cams in query.items():
        assert len(cams) == 2 and cams[0] != cams[1]  # two queries from two cameras
        assert len(cams) + len(gallery[pid]) == p.test_images_per_id
        assert len(set(cams) | set(gallery[pid])) >= p.min_test_cameras
        assert all(any(g != c for g in gallery[pid]) for c in cams)  # a match from another camera
    assert len(gallery[0]) == p.num_distractors and set(gallery) - {0} == set(query)
    # distractors only in the gallery (the loader would drop them elsewhere: check the files)
    assert not [f for d in ("bounding_box_train", "query") for f in (tmp_path / d).glob("0000_*")]

    with Image.open(ds.gallery[0].path) as im:
        assert im.size == (p.width, p.height) == (64, 128) and im.format == "JPEG"


def test_default_train_split_is_long_tailed():
    p = StreetParams()
    n = train_counts(p, np.random.default_rng(0))
    assert len(n) == 120 and n.min() == 1 and n.max() == 8
    assert 380 <= n.sum() <= 420  # ~400 images, like the small set it imitates
    hist = np.bincount(n, minlength=9)[1:]
    assert hist[0] == hist.max() and hist[0] > 3 * hist[-1]
    assert n.sum() == train_counts(p, np.random.default_rng(1)).sum()  # same total on every seed


def test_identity_signal():
    """Two images of one person (same camera) are closer in pixels than two different people."""
    cat = make_catalogue(np.random.default_rng([0, 2]))
    walkers = [make_walker(np.random.default_rng([0, 3, i]), cat) for i in range(10)]
    same, diff = [], []
    for c in range(2):
        cam = make_street_camera(np.random.default_rng([0, 1, c]), SCENES[c])
        imgs = [(i, render_street_image(w, cam, np.random.default_rng([9, c, i, k])).astype(np.float32) / 255)
                for i, w in enumerate(walkers) for k in range(3)]
        assert imgs[0][1].shape == (128, 64, 3)
        for (i, a), (j, b) in itertools.combinations(imgs, 2):
            (same if i == j else diff).append(np.sqrt(((a - b) ** 2).mean()))
    assert np.mean(same) < 0.97 * np.mean(diff)
