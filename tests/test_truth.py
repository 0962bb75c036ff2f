"""The measuring stick: the renderer's truth images, the fidelity figures against them, the captured
share's ratio interval and bench/oracle.py's summary, each on a case with a known answer."""
from dataclasses import replace

import numpy as np
import pytest

from rgsyn import stats
from rgsyn.config import load_params
from rgsyn.data.procedural.truth import truth_images
from rgsyn.eval.fidelity import (classification_accuracy, identity_fidelity, kernel_distance, precision_recall)

from tests.conftest import ROOT, load_bench


@pytest.mark.parametrize("params, pids, shape", [("params.yaml", [1, 7], (64, 32)), ("face/params.yaml", [0, 5], (32, 32))])
def test_truth_images_are_new_draws_of_the_identity(params, pids, shape):
    data = load_params(ROOT / params).data
    a, la = truth_images(data, pids, 3, salt=0)
    b, _ = truth_images(data, pids, 3, salt=0)
    c, _ = truth_images(data, pids, 3, salt=1)
    assert a.shape == (6, 3, *shape) and la == [pids[0]] * 3 + [pids[1]] * 3
    assert bool((a == b).all())  # a pure function of (seed, identity, image, salt)
    assert not bool((a == c).all())  # another salt, another draw
    assert len({bytes(x.numpy()) for x in a}) == 6  # no two captures alike


def test_truth_images_refuse_what_the_renderer_cannot_draw():
    data = load_params(ROOT / "params.yaml").data
    with pytest.raises(ValueError, match="not a train identity"):
        truth_images(data, [data.embedded.num_train_ids + 1], 2)
    with pytest.raises(ValueError, match="held-out real images"):
        truth_images(replace(data, layout="market1501"), [1], 2)


def test_precision_recall_on_a_line():
    real = np.array([[0.0], [1.0], [2.0], [3.0]])  # k = 1: every ball has radius 1
    fake = np.array([[0.5], [10.0]])  # one inside the real manifold, one far out
    assert precision_recall(real, fake, k=1) == (0.5, 1.0, 1)  # the fake balls reach 9.5: every real is covered
    assert precision_recall(real, fake, k=3)[2] == 1  # one k for both: the two fakes allow k = 1 at most


def test_kernel_distance_exact_and_unbiased():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    # k(a, b) = 1, k(a, a) = k(b, b) = 1.5³: (k_aa + k_bb)/… the unbiased estimate of a set against itself
    assert kernel_distance(a, a) == pytest.approx(1.0 - 1.5 ** 3)
    rng = np.random.default_rng(0)
    same = [kernel_distance(rng.normal(size=(8, 4)), rng.normal(size=(8, 4))) for _ in range(400)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same))  # 0 in expectation at 8 rows
    assert kernel_distance(rng.normal(size=(8, 4)), rng.normal(2, 1, size=(8, 4))) > 0.5


def test_classification_accuracy_reads_the_reference_with_the_samples_prototypes():
    real = np.array([[1.0, 0.1], [0.9, -0.1], [0.1, 1.0], [-0.1, 0.9]])
    cls = np.array([0, 0, 1, 1])
    fake = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert classification_accuracy(real, cls, fake, np.array([0, 1])) == 1.0
    assert classification_accuracy(real, cls, fake, np.array([1, 0])) == 0.0  # identities drawn swapped


def test_identity_fidelity_tells_the_right_people_from_one_person_for_all():
    rng = np.random.default_rng(0)
    cls = np.repeat(np.arange(6), 8)
    mu = rng.normal(size=(6, 16))
    real = mu[cls] + 0.3 * rng.normal(size=(48, 16))
    good = identity_fidelity(real, cls, mu[cls] + 0.3 * rng.normal(size=(48, 16)), cls)
    collapsed = identity_fidelity(real, cls, mu[0] + 0.3 * rng.normal(size=(48, 16)), cls)
    assert good["identities"] == 6 and good["k"] == 3 and good["cas"] == 1.0
    assert good["precision"] > 0.7 and good["recall"] > 0.7 and good["kernel_distance"] < 0.05
    assert collapsed["precision"] < 0.3 and collapsed["kernel_distance"] > 0.2 and collapsed["cas"] < 0.5


def test_paired_ratio_fieller():
    base = np.array([0.0, 1.0, 2.0, 3.0])
    r = stats.paired_ratio(base, base + 1.0, base + 2.0)
    assert (r["ratio"], r["ci_low"], r["ci_high"], r["bounded"]) == (0.5, 0.5, 0.5, True)
    noisy = stats.paired_ratio(base, base + np.array([1.0, 2.0, 0.0, 1.0]), base + np.array([2.0, -2.0, 1.0, -1.0]))
    assert not noisy["bounded"] and noisy["ci_low"] == -np.inf  # the denominator is not resolved


def test_oracle_summary_and_captured_share():
    oracle = load_bench("oracle")
    gains = {"real_only": 0.0, "release": 0.02, "renderer": 0.08, "renderer_lowres": 0.08}
    res = [{"row": r, "seed": s, "mAP": 0.7 + 0.01 * s + g + 0.002 * ((s * 7 + i) % 3)}
           for i, (r, g) in enumerate(gains.items()) for s in range(6)]
    out = oracle.summarize(res, "mAP")
    assert out["rows"]["renderer"]["vs_real_only"]["mean"] == pytest.approx(0.08, abs=0.003)
    c = out["captured_share"]["renderer"]
    assert c["bounded"] and c["ci_low"] < c["ratio"] < c["ci_high"] and c["ratio"] == pytest.approx(0.25, abs=0.05)
    assert "captured share" in oracle.table({"pretrained": out}, "mAP")


def test_identity_fidelity_with_one_sample_per_identity_keeps_only_the_cas():
    real, cls = np.eye(3).repeat(2, 0), np.repeat(np.arange(3), 2)
    out = identity_fidelity(real, cls, np.eye(3), np.arange(3))
    assert out["cas"] == 1.0 and out["identities"] == 0 and out["precision"] is None and out["k"] is None


def test_frechet_low_rank_is_the_square_root_form_and_cheap_at_resnet50_width():
    import time

    from rgsyn.eval.fidelity import _centred, frechet_distance, frechet_low_rank, gaussian_stats, paired_frechet

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(12, 20)), rng.normal(0.3, 1.2, size=(6, 20))  # fewer samples than dimensions
    exact = frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))
    assert frechet_low_rank(real.mean(0), _centred(real), fake) == pytest.approx(exact, rel=1e-6)
    # DiT-XL/2 rollouts read by a ResNet-50 (2048 features), 8 samples: a 2048² sqrtm per bootstrap
    # resample made RL's before/after comparison run for most of an hour on a CPU
    real, before, after = rng.normal(size=(16, 2048)), rng.normal(size=(8, 2048)), rng.normal(size=(8, 2048))
    t0 = time.perf_counter()
    out = paired_frechet(real, before, after, np.repeat(np.arange(4), 2))
    assert time.perf_counter() - t0 < 10 and np.isfinite(out["change"]) and out["se"] > 0
