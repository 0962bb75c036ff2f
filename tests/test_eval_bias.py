"""Tests for rgsyn.eval.bias: per-group accuracy, mean/std/TO summary, RFW-style per-group verification."""
import numpy as np
import pytest

from rgsyn.eval.bias import evaluate_groups, group_accuracy, summarize


def test_group_accuracy_hand_case():
    # group a: [T, F] -> 1/2; group b: [T, T, F, T] -> 3/4; group c: [F] -> 0.
    correct = [True, False, True, True, False, True, False]
    groups = ["a", "a", "b", "b", "b", "b", "c"]
    assert group_accuracy(correct, groups) == {"a": 0.5, "b": 0.75, "c": 0.0}
    # integer labels come back as plain ints
    out = group_accuracy(np.array([1, 0, 1]), np.array([2, 2, 5]))
    assert out == {2: 0.5, 5: 1.0} and all(type(k) is int for k in out)
    with pytest.raises(ValueError):
        group_accuracy([True, False], ["a"])


def test_summarize_population_std_and_trade_off():
    # {.9, .8, .7}: mean .8; population variance (.01 + 0 + .01)/3 -> std sqrt(.02/3) = 0.0816497; TO = .8 - std.
    out = summarize({"African": 0.9, "Asian": 0.8, "Indian": 0.7})
    assert out["mean"] == pytest.approx(0.8)
    assert out["std"] == pytest.approx(np.sqrt(0.02 / 3))
    assert out["TO"] == pytest.approx(0.8 - np.sqrt(0.02 / 3))
    assert out["per_group"] == {"African": 0.9, "Asian": 0.8, "Indian": 0.7}
    with pytest.raises(ValueError):
        summarize({})


def _pairs(dists):
    angles = np.arccos(1.0 - np.asarray(dists, dtype=float) / 2.0)
    emb = np.zeros((2 * len(dists), 2))
    emb[0::2, 0] = 1.0
    emb[1::2, 0], emb[1::2, 1] = np.cos(angles), np.sin(angles)
    return emb


def test_evaluate_groups():
    # Group "easy": same pairs at distance 0, different at 2 -> verification accuracy 1.
    # Group "hard": the 2-fold case of test_eval_verification (distances .305/.705/.505/.905) -> accuracy .75.
    # mean = .875, population std = .125, TO = .75.
    easy = (_pairs([0.0, 2.0, 0.0, 2.0]), [True, False, True, False])
    hard = (_pairs([0.305, 0.705, 0.505, 0.905]), [True, False, True, False])
    out = evaluate_groups({"easy": easy, "hard": hard}, nrof_folds=2)
    assert out["per_group"] == pytest.approx({"easy": 1.0, "hard": 0.75})
    assert out["mean"] == pytest.approx(0.875)
    assert out["std"] == pytest.approx(0.125)
    assert out["TO"] == pytest.approx(0.75)
