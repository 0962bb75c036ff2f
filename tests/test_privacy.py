"""The privacy audit's pieces on hand-computed and planted cases: calibration, near-copy flags, the
consistency gate, the 1:N identity threshold, membership-inference statistics."""
import math

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from rgsyn import stats
from rgsyn.privacy import copies
from rgsyn.privacy.audit import identity_threshold
from rgsyn.privacy.consistency import consistency_gate, genuine_pair_quantile, largest_cluster
from rgsyn.privacy.mia import attack_summary, shard_scores
from rgsyn.privacy.novel import leaked_identities, sample_rows


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_nearest_other_shot_and_threshold_by_hand():
    # identity 0: three shots at 0°, 60°, 90°; identity 1: one shot (no other shot: NaN)
    ang = np.radians([0, 60, 90, 10])
    v = torch.tensor(np.stack([np.cos(ang), np.sin(ang)], 1), dtype=torch.float32)
    near = copies.nearest_other_shot(v, torch.tensor([0, 0, 0, 1]))
    np.testing.assert_allclose(near[:3], [0.5, math.cos(math.radians(30)), math.cos(math.radians(30))], atol=1e-6)
    assert np.isnan(near[3])
    assert copies.threshold(near, 0.5) == pytest.approx(math.cos(math.radians(30)))  # median of the three
    assert copies.threshold(near, 0.25) == pytest.approx((0.5 + math.cos(math.radians(30))) / 2)  # numpy linear
    # a mirror view counts as the image itself: the flipped copy of shot 0 is shot 1 here
    alt = v.clone()
    alt[0] = v[1]
    assert copies.nearest_other_shot(v, torch.tensor([0, 0, 0, 1]), alt=alt)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="audit.copy_quantile"):
        copies.threshold(near, 1.0)


def test_pixel_vectors_are_invariant_to_brightness_and_contrast():
    g = torch.Generator().manual_seed(0)
    img = torch.randint(40, 200, (1, 3, 32, 16), generator=g, dtype=torch.uint8)
    brighter = (img.float() * 1.1 + 10).clamp(0, 255).to(torch.uint8)
    other = torch.randint(0, 255, (1, 3, 32, 16), generator=g, dtype=torch.uint8)
    a, b, c = (copies.pixel_vectors(x, 32, 16) for x in (img, brighter, other))
    assert (a @ b.t()).item() > 0.99 and abs((a @ c.t()).item()) < 0.2
    torch.testing.assert_close(a.norm(dim=1), torch.ones(1))


def test_planted_copy_is_flagged_and_an_unrelated_identity_is_not():
    """Real shots of 4 identities; a sample that is a training image (and one that is its mirror) lands
    above the pixel threshold, a new person below it."""
    g = torch.Generator().manual_seed(1)
    base = torch.randint(0, 255, (4, 3, 32, 16), generator=g).float()
    shots = torch.stack([(b + 40 * torch.randn(b.shape, generator=g)).clamp(0, 255) for b in base for _ in range(3)])
    shots = shots.to(torch.uint8)  # (12, 3, 32, 16): 3 different shots of each identity
    pids = torch.arange(4).repeat_interleave(3)
    pix = copies.pixel_vectors(shots, 32, 16)
    pix_m = copies.pixel_vectors(shots.flip(-1), 32, 16)
    thr = copies.threshold(copies.nearest_other_shot(pix, pids, alt=pix_m), 0.99)
    ref = torch.cat([pix, pix_m])
    planted = torch.stack([shots[4], shots[7].flip(-1), torch.randint(0, 255, (3, 32, 16), generator=g,
                                                                        dtype=torch.uint8)])
    sim, idx = copies.max_similarity(copies.pixel_vectors(planted, 32, 16), ref)
    flags = sim.double() > thr
    assert flags.tolist() == [True, True, False]
    assert pids[idx[:2] % 12].tolist() == [1, 2]  # and it names whose image was copied


def test_max_similarity_blocks_equal_brute_force():
    g = torch.Generator().manual_seed(0)
    q, r = torch.randn(9, 8, generator=g), torch.randn(13, 8, generator=g)
    s, a = copies.max_similarity(q, r, chunk=4)
    brute = F.normalize(q, dim=1) @ F.normalize(r, dim=1).t()
    torch.testing.assert_close(s, brute.max(1).values)
    assert torch.equal(a, brute.argmax(1))


def test_consistency_gate_keeps_the_largest_consistent_cluster():
    protos = unit([1, 0, 0], [0, 1, 0])
    feats = unit([1, 0.1, 0], [1, 0.12, 0.02], [1, 0, 0.3],  # class 0: a tight pair + one further out
                 [0.9, 0.1, -0.9],  # class 0, top-1 right but far from the others
                 [1, 0.2, 0],  # class 1 sample that reads as class 0: not top-1
                 [0.1, 1, 0], [0, 1, 0.1])  # class 1, consistent
    classes = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    out = consistency_gate(feats, classes, protos, link=0.9)
    assert out["top1"].tolist() == [True, True, True, True, False, True, True]
    assert out["consistent"].tolist() == [True, True, True, False, False, True, True]
    assert largest_cluster(unit([1, 0], [0, 1]), 0.9, proto=torch.tensor([0.0, 1.0])).tolist() == [False, True]
    pairs = unit([1, 0], [0.8, 0.6], [0, 1], [0.6, 0.8], [1, 0])
    q = genuine_pair_quantile(pairs, torch.tensor([0, 0, 1, 1, 2]), 0.5)
    assert q == pytest.approx(0.8)  # the two genuine pairs have cosine 0.8 each


def test_identity_threshold_is_a_1_to_n_quantile_of_nearest_other_identity():
    protos = unit([1, 0], [0.6, 0.8], [0, 1], [-1, 0])
    thr, maxima = identity_threshold(protos, fpir=0.5)
    np.testing.assert_allclose(maxima, [0.6, 0.8, 0.8, 0.0], atol=1e-6)
    assert thr == pytest.approx(np.quantile([0.6, 0.8, 0.8, 0.0], 0.5))
    with pytest.raises(ValueError, match="audit.fpir"):
        identity_threshold(protos, 0.0)


def test_novel_rows_follow_the_table_distribution():
    g = torch.Generator().manual_seed(0)
    table = torch.randn(400, 4, generator=g) * torch.tensor([1.0, 2.0, 0.5, 1.0]) + torch.tensor([3.0, 0, 0, -1])
    rows = sample_rows(table, 4000, seed=1, novelty_quantile=None)  # covariance shrunk by 0.1 to its mean variance
    assert torch.allclose(rows.mean(0), table.mean(0), atol=0.15)
    var = table.var(0)
    assert torch.allclose(rows.var(0), 0.9 * var + 0.1 * var.mean(), rtol=0.1)
    assert torch.allclose(sample_rows(table, 4000, 1, shrinkage=0.0, novelty_quantile=None).var(0), var, rtol=0.1)
    novel = sample_rows(table, 200, seed=1)  # no draw nearer a real row than the median real row to its neighbour
    unit = F.normalize(table, dim=1)
    own = unit @ unit.t()
    own.fill_diagonal_(-2)
    assert (F.normalize(novel, dim=1) @ unit.t()).max(1).values.max() <= torch.quantile(own.max(1).values, 0.5) + 1e-6
    assert torch.equal(novel, sample_rows(table, 200, seed=1)) and not torch.equal(novel, sample_rows(table, 200, 2))


def test_leaked_identities_over_all_images_and_per_half_by_hand():
    real = unit([1, 0, 0], [0, 1, 0])  # two real identities on the x and y axes
    # identity 7: images at +-45° around x in the x-z plane: their mean is x itself (cosine 1 > 0.9),
    # each half (one image) has cosine cos 45° = 0.707 to x. identity 8: one image on x (a leak in every
    # view) and one on z. identity 9: far from both (z and -z mean 0 would be undefined: use z, z).
    s = math.sqrt(0.5)
    feats = torch.tensor([[s, 0, s], [s, 0, -s], [1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]])
    out = leaked_identities(feats, [7, 7, 8, 8, 9, 9], real, threshold=0.9)
    assert out["all"] == [7]  # 8's mean (x + z) / 2 has cosine 0.707 to x
    assert out["split_half"] == [8]  # 8's first half is x itself; 7's halves stay at 0.707
    assert leaked_identities(feats, [7, 7, 8, 8, 9, 9], real, threshold=0.5) == {"all": [7, 8], "split_half": [7, 8]}


def test_mia_auc_of_a_memorising_toy_is_one_and_of_a_random_scorer_one_half():
    rng = np.random.default_rng(0)
    # a generator that memorised its members: near-zero error on them, chance-level error elsewhere
    member_err, held_err = rng.uniform(0.0, 0.1, 300), rng.uniform(0.5, 1.0, 300)
    toy = attack_summary(-member_err, -held_err)
    assert toy["auc"] == 1.0 and toy["tpr_at_fpr_0.01"] == 1.0 and toy["auc_ci"][0] > 0.99
    rand = attack_summary(rng.normal(size=2000), rng.normal(size=2000))
    assert abs(rand["auc"] - 0.5) < 0.03 and rand["auc_ci"][0] < 0.5 < rand["auc_ci"][1]
    assert rand["tpr_at_fpr_0.01"] < 0.05
    # ties count one half, by hand
    assert stats.roc_auc([1, 2], [2, 0]) == pytest.approx((0 + 1 + 0.5 + 1) / 4)  # pairs (1,2) (1,0) (2,2) (2,0)
    # FPR 0.25 of 4 negatives: one may pass, so the threshold is 2 and the positives above it are 5 and 3
    assert stats.tpr_at_fpr([5, 3, 1], [0, 1, 2, 4], 0.25) == pytest.approx(2 / 3)


def test_vectorised_auc_of_the_interval_is_roc_auc_and_fpr_bounds_are_exact():
    rng = np.random.default_rng(3)
    pos, neg = rng.integers(0, 5, 40).astype(float), rng.integers(0, 4, 30).astype(float)  # many ties
    assert stats._auc_u(pos, neg) == pytest.approx(stats.roc_auc(pos, neg), abs=1e-12)
    lo, hi = stats.auc_interval(pos, neg)
    assert lo < stats.roc_auc(pos, neg) < hi
    # 29 of 100 negatives (71..99) may pass at FPR 0.29, though 0.29 * 100 is 28.999... in floating point
    neg = np.arange(100.0)
    assert stats.tpr_at_fpr([70.5, 71.5, 200.0], neg, 0.29) == 1.0
    assert stats.tpr_at_fpr([70.5, 71.5, 200.0], neg, 0.28) == pytest.approx(2 / 3)
    fpr, tpr = stats.roc([1.0], [1.0])  # a tie is one diagonal segment, not a staircase
    assert fpr.tolist() == [0.0, 1.0] and tpr.tolist() == [0.0, 1.0]


def test_shard_scores_compare_each_image_with_its_own_identity_only():
    real = unit([1, 0], [0, 1], [0.6, 0.8])
    syn = unit([0.8, 0.6], [1, 0], [0, 1])
    s = shard_scores(real, [7, 7, 9], syn, [7, 9, 9])
    np.testing.assert_allclose(s, [0.8, 0.6, 0.8], atol=1e-6)  # image 0 -> sample 0 only (pid 7)
    assert shard_scores(real, [5, 7, 9], syn, [7, 9, 9])[0] == -1.0  # no sample of its identity


def test_paired_difference_by_hand():
    a, b = [0.50, 0.52, 0.48], [0.55, 0.56, 0.50]
    d = stats.paired_difference(a, b, n_boot=2000)
    assert d["mean"] == pytest.approx(np.mean([0.05, 0.04, 0.02])) and d["n"] == 3
    assert d["ci_low"] >= 0.02 - 1e-12 and d["ci_high"] <= 0.05 + 1e-12  # a bootstrap mean stays in the data's range
    assert d["p_value"] == pytest.approx(scipy.stats.ttest_rel(b, a).pvalue)
    assert stats.bootstrap_se([1.0, 1.0, 1.0]) == 0.0
    t = stats.paired_t(a, b)  # mean ± t(0.975, n − 1) · s / √n, by hand
    half = scipy.stats.t.ppf(0.975, 2) * np.std([0.05, 0.04, 0.02], ddof=1) / np.sqrt(3)
    assert (t["ci_low"], t["ci_high"]) == pytest.approx((d["mean"] - half, d["mean"] + half))
    assert t["p_value"] == pytest.approx(d["p_value"]) and t["n"] == 3
