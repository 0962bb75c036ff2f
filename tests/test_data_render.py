import hashlib
from collections import defaultdict

from rgsyn.config import load_params
from rgsyn.data import market1501
from rgsyn.data.procedural.render import render_dataset
from tests.conftest import micro_params


def _digest(root):
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.jpg")):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def test_render_is_deterministic_market_layout_and_scarce(tmp_path):
    p = load_params(micro_params(tmp_path)).data
    render_dataset(tmp_path / "a", p.embedded, p.seed)
    render_dataset(tmp_path / "b", p.embedded, p.seed)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    render_dataset(tmp_path / "c", p.embedded, p.seed + 1)
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")

    ds = market1501.load(tmp_path / "a")  # the real loader reads it
    e = p.embedded
    per_id = defaultdict(int)
    for r in ds.train:
        per_id[r.pid] += 1
    assert len(per_id) == e.num_train_ids
    assert min(per_id.values()) >= e.train_images_min and max(per_id.values()) <= e.train_images_max
    test_ids = {r.pid for r in ds.query}
    assert len(test_ids) == e.num_test_ids and not test_ids & set(per_id)  # disjoint
    assert sum(r.pid == 0 for r in ds.gallery) == e.num_distractors
    # every query has a match in the gallery from another camera (Market-1501 rule)
    for q in ds.query:
        assert any(g.pid == q.pid and g.camid != q.camid for g in ds.gallery)
    from PIL import Image

    with Image.open(ds.train[0].path) as im:
        assert im.size == (e.width, e.height)


def test_long_tail(tmp_path):
    import dataclasses

    import numpy as np

    from rgsyn.data.procedural.render import _images_per_train_id

    e = dataclasses.replace(load_params(micro_params(tmp_path)).data.embedded, num_train_ids=2000)
    n = _images_per_train_id(e, np.random.default_rng(0))
    frac = np.bincount(n, minlength=9)[1:] / len(n)
    w = np.arange(1, 9) ** -e.zipf_a
    np.testing.assert_allclose(frac, w / w.sum(), atol=0.03)
    assert frac[0] > 0.35 and frac[0] > 4 * frac[-1]
