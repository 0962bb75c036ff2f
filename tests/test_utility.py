"""The utility check's pieces: the held-out folds, the face pairs, the pairs needed, the metrics file, the
verdict, what the downstream stage ships and the report's first line. The trainings themselves run in the served-pipeline test."""
import json

import pytest

from rgsyn.config import load_params
from rgsyn.data.records import ReidRecord
from rgsyn.downstream import utility
from rgsyn.downstream.run import shipped
from rgsyn.report import utility_line
from tests.conftest import load_bench, micro_params


def _records() -> list[ReidRecord]:
    """20 identities × 4 images; identities 0-4 seen by one camera only (no re-id query possible)."""
    return [ReidRecord(f"/x/{q}_{i}.png", q, 0 if q < 5 else i % 2) for q in range(20) for i in range(4)]


def test_folds_partition_the_usable_identities():
    train = _records()
    eligible = utility.eligible_ids(train)
    assert eligible == list(range(5, 20))  # identities seen by one camera never validate
    folds = utility.fold_ids(train, 3, seed=0)
    assert len(folds) == 3 and sorted(q for f in folds for q in f) == eligible  # disjoint, each exactly once
    assert sorted(len(f) for f in folds) == [5, 5, 5]
    assert utility.fold_ids(train, 3, seed=0) == folds  # the seed fixes it
    assert utility.fold_ids(train, 3, seed=1) != folds
    assert sorted(q for f in utility.fold_ids(train, 4, seed=0, cameras=False) for q in f) == list(range(20))
    with pytest.raises(ValueError, match="utility.folds"):
        utility.fold_ids(train, 8, seed=0)  # 15 usable identities: a fold of 8 would hold one
    with pytest.raises(ValueError, match="utility.folds"):
        utility.fold_ids(train, 1, seed=0)


def test_every_usable_identity_validates_once_and_the_rest_always_trains():
    train = _records()
    held_count: dict[int, int] = {}
    for f in range(3):
        kept, held = utility.validation_split(train, 3, f, seed=0)
        held_ids, kept_ids = {r.pid for r in held}, {r.pid for r in kept}
        assert not held_ids & kept_ids and len(kept) + len(held) == len(train)  # whole identities
        assert set(range(5)) <= kept_ids  # the one-camera identities are trained on in every fold
        assert held_ids == set(utility.fold_ids(train, 3, seed=0)[f])
        for q in held_ids:
            held_count[q] = held_count.get(q, 0) + 1
    assert held_count == {q: 1 for q in range(5, 20)}
    with pytest.raises(ValueError, match="fold 3"):
        utility.validation_split(train, 3, 3, seed=0)


def test_pairs_needed_on_a_known_case():
    """Differences of mean 1 and sd 1: t_{0.975, n−1} / √n < 1 first at n = 7 (t_{.975,5} / √6 =
    2.571 / 2.449 = 1.05; t_{.975,6} / √7 = 2.447 / 2.646 = 0.92)."""
    from scipy import stats as st

    d = [0.0, 1.0, 2.0]  # mean 1, sample sd 1
    assert utility.pairs_needed(d) == 7
    assert st.t.ppf(0.975, 5) / 6 ** 0.5 > 1 > st.t.ppf(0.975, 6) / 7 ** 0.5
    assert utility.pairs_needed([-2.0, -1.0, 0.0]) == 7  # the sign does not matter
    assert utility.pairs_needed([-1.0, 0.0, 1.0]) is None  # mean 0: nothing resolves it
    assert utility.pairs_needed([0.5, 0.5]) == 2  # no spread
    big = utility.pairs_needed([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])  # resolved already at 7 pairs
    assert big <= 7
    assert "do not resolve" in utility.power_note(3, 7) and "resolve the observed" in utility.power_note(7, big)


def test_metrics_file_holds_every_pair(tmp_path, monkeypatch):
    """summarize on a micro data set: folds ≥ 2, pairs = folds × seeds, the per-pair values, the interval
    over all pairs, the pairs needed and the power note."""
    from rgsyn.data.layouts import read_index
    from rgsyn.data.stage import prepare

    p = load_params(micro_params(tmp_path, **{"utility.folds": 3, "utility.seeds": [0, 1]}))
    prepare(p.data)
    units = [(f, s) for f in range(p.utility.folds) for s in p.utility.seeds]
    per = [{"fold": f, "seed": s, "real_only": {"mAP": 0.4 + 0.01 * k}, "full": {"mAP": 0.42 + 0.01 * k + 0.001 * (k % 2)}}
           for k, (f, s) in enumerate(units)]
    out = json.loads(json.dumps(utility.summarize(p, per)))  # what metrics/utility.json holds
    assert out["folds"] == 3 >= 2 and out["seeds"] == [0, 1] and out["pairs"] == 6 == out["diff"]["n"]
    assert [(v["fold"], v["seed"]) for v in out["values"]] == units
    assert out["values"][1] == {"fold": 0, "seed": 1, "real": pytest.approx(0.41), "synthetic": pytest.approx(0.431)}
    assert out["verdict"] == "helps" and out["diff"]["ci_low"] > 0 and out["pairs_needed"] <= 6
    assert out["power"] and len(out["per_fold"]) == 3
    held = sum(f["validation"]["identities"] for f in out["per_fold"])
    assert held == len(utility.eligible_ids(read_index(p.data.index).train))  # every usable identity validates once


def _image_files(folder, ids: int, per_id: int, content) -> list[ReidRecord]:
    """ids × per_id files whose bytes are content(identity, image): records of one camera."""
    out = []
    for q in range(ids):
        for i in range(per_id):
            path = folder / f"{q}_{i}.png"
            path.write_bytes(content(q, i).encode())
            out.append(ReidRecord(str(path), q, 0))
    return out


def test_face_pairs_are_balanced(tmp_path):
    held = _image_files(tmp_path, 4, 3, lambda q, i: f"{q}")  # an identity's images share their bytes
    bins, same = utility.face_pairs(held, seed=0)
    assert len(bins) == 2 * len(same) and same.count(True) == same.count(False) == 4 * 3
    for k, s in enumerate(same):  # a genuine pair shares the identity, an impostor pair never does
        assert (bins[2 * k] == bins[2 * k + 1]) == s


def test_verdict_and_what_is_shipped(tmp_path):
    assert utility.verdict({"ci_low": 0.01, "ci_high": 0.03}) == "helps"
    assert utility.verdict({"ci_low": -0.03, "ci_high": -0.01}) == "hurts"
    assert utility.verdict({"ci_low": -0.01, "ci_high": 0.02}) == "inconclusive"
    metrics = tmp_path / "utility.json"
    for gain, verdict, ships in ((True, "hurts", "real_only"), (False, "hurts", "real+synthetic"),
                                 (True, "inconclusive", "real+synthetic"), (True, None, "real+synthetic")):
        if verdict:
            metrics.write_text(json.dumps({"verdict": verdict}))
        elif metrics.exists():
            metrics.unlink()
        p = load_params(micro_params(tmp_path, **{"utility.metrics": str(metrics),
                                                  "downstream.require_gain": gain}))
        assert shipped(p) == ships, (gain, verdict)


def test_report_first_line_says_when_it_hurts():
    util = {"metric": "mAP", "verdict": "hurts", "folds": 3, "seeds": [0], "pairs": 3, "pairs_needed": 3,
            "diff": {"mean": -0.018, "ci_low": -0.034, "ci_high": -0.002, "n": 3}}
    line = utility_line(util, "real_only")
    assert line.startswith("THE SYNTHETIC DATA HURTS") and "-1.8 [-3.4, -0.2] points" in line
    assert "over 3 pairs (3 folds × 1 seed)" in line and "would resolve" not in line
    assert "real only (downstream.require_gain)" in line
    assert utility_line({**util, "verdict": "helps"}, "real+synthetic").startswith("the synthetic data helps")
    unsure = utility_line({**util, "verdict": "inconclusive", "pairs_needed": 25}, "real+synthetic")
    assert unsure.startswith("the utility check cannot tell") and "~25 pairs would resolve the observed difference" in unsure
    assert "no number of pairs" in utility_line({**util, "verdict": "inconclusive", "pairs_needed": None}, None)
    assert utility_line({}, None).startswith("no utility check ran")


def test_face_pairs_are_written_once_and_only_read_by_the_trainings(tmp_path):
    from rgsyn.data.records import FaceDataset

    ds = FaceDataset("faces", train=_image_files(tmp_path, 8, 2, lambda q, i: f"{q}-{i}"))
    work = tmp_path / "check"
    with pytest.raises(FileNotFoundError, match="write=True"):
        utility.check_dataset(ds, 2, 0, 0, work)  # a training never builds the pairs itself
    built = [utility.check_dataset(ds, 2, f, 0, work, write=True) for f in range(2)]
    pairs = [work / f"utility-pairs-{f}.bin" for f in range(2)]
    before = [x.stat().st_mtime_ns for x in pairs]
    read = [utility.check_dataset(ds, 2, f, 0, work) for f in range(2)]
    assert read == built and [x.stat().st_mtime_ns for x in pairs] == before
    assert all(len({r.pid for r in x.train}) == 4 for x in read)  # half the identities trained on, half in the pairs
    assert {r.pid for r in read[0].train} == {r.pid for r in built[1].train} ^ set(range(8))  # the folds swap


def test_bench_factor_levels_keep_strings_as_written():
    """`--factors selection=off/exact`: YAML would read `off` as false, which the config then refuses
    only after the first arms have trained; numeric and boolean levels are still YAML scalars."""
    factors = load_bench("utility").factors
    assert factors("selection=off/exact,share=0.2/0.3,accepted") == [
        ("selection", ["off", "exact"]), ("share", [0.2, 0.3]), ("accepted", [False])]
    assert factors("per_id=4") == [("per_id", [4])]
    with pytest.raises(SystemExit, match="unknown factor"):
        factors("shares=0.2")


def test_bench_checks_every_level_before_any_synthesis(tmp_path, monkeypatch):
    """A wrong per_id or generator level fails before the first synthesis (RL and synthesis take
    minutes each), whatever comes before it in --factors; right levels plan their own shards."""
    from rgsyn.config import ConfigError

    bench = load_bench("utility")
    made = []
    monkeypatch.setattr(bench, "synthesize_level", lambda *a: made.append(a))
    params = str(micro_params(tmp_path))
    for spec in ("per_id=4/many", "share=0.2,generator=coldstart/ppo", "per_id=4,share=lots"):
        with pytest.raises(ConfigError):
            bench.plan_levels(params, tmp_path, spec)
    assert made == []
    plan = bench.plan_levels(params, tmp_path, "share=0.2,per_id=4,generator=coldstart/dpok")
    assert [(k, v) for k, v, _, _ in plan] == [("share", 0.2), ("per_id", 4), ("generator", "coldstart"),
                                               ("generator", "dpok")]
    assert plan[0][2:] == ({}, {"downstream.mix.share": 0.2})
    assert plan[1][2]["synth.per_id"] == 4 and plan[3][2]["rl.algorithm"] == "dpok"
    assert plan[2][3] == {"downstream.mix.synthetic": str(tmp_path / "synthetic-generator-coldstart")}
