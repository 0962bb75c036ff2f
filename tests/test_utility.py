"""The utility check's pieces: the held-out split, the face pairs, the verdict, what the downstream stage
ships and the report's first line. The trainings themselves run in the served-pipeline test."""
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


def test_validation_split_holds_out_whole_usable_identities():
    train = _records()
    kept, held = utility.validation_split(train, 0.3, seed=0)
    held_ids, kept_ids = {r.pid for r in held}, {r.pid for r in kept}
    assert len(held_ids) == 6 and not held_ids & kept_ids and len(kept) + len(held) == len(train)
    assert all(q >= 5 for q in held_ids)  # only identities seen by two cameras are held out
    assert utility.validation_split(train, 0.3, seed=0) == (kept, held)  # the seed fixes it
    assert {r.pid for r in utility.validation_split(train, 0.3, seed=1)[1]} != held_ids
    faces = {r.pid for r in utility.validation_split(train, 0.3, seed=0, cameras=False)[1]}
    assert len(faces) == 6  # faces: any identity with two images
    with pytest.raises(ValueError, match="utility.val_share"):
        utility.validation_split(train, 0.05, seed=0)


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
    util = {"metric": "mAP", "verdict": "hurts",
            "diff": {"mean": -0.018, "ci_low": -0.034, "ci_high": -0.002, "n": 3}}
    line = utility_line(util, "real_only")
    assert line.startswith("THE SYNTHETIC DATA HURTS") and "-1.8 [-3.4, -0.2] points" in line
    assert "real only (downstream.require_gain)" in line
    assert utility_line({**util, "verdict": "helps"}, "real+synthetic").startswith("the synthetic data helps")
    assert utility_line({}, None).startswith("no utility check ran")


def test_face_pairs_are_written_once_and_only_read_by_the_trainings(tmp_path):
    from rgsyn.data.records import FaceDataset

    ds = FaceDataset("faces", train=_image_files(tmp_path, 8, 2, lambda q, i: f"{q}-{i}"))
    work = tmp_path / "check"
    with pytest.raises(FileNotFoundError, match="write=True"):
        utility.check_dataset(ds, 0.5, 0, work)  # a training never builds the pairs itself
    built = utility.check_dataset(ds, 0.5, 0, work, write=True)
    pairs = work / "utility-pairs.bin"
    before = pairs.stat().st_mtime_ns
    read = utility.check_dataset(ds, 0.5, 0, work)
    assert read == built and pairs.stat().st_mtime_ns == before
    assert len({r.pid for r in read.train}) == 4  # half the identities trained on, half in the pairs


def test_bench_factor_levels_keep_strings_as_written():
    """`--factors selection=off/exact`: YAML would read `off` as false, which the config then refuses
    only after the first arms have trained; numeric and boolean levels are still YAML scalars."""
    factors = load_bench("utility").factors
    assert factors("selection=off/exact,share=0.2/0.3,accepted") == [
        ("selection", ["off", "exact"]), ("share", [0.2, 0.3]), ("accepted", [False])]
    assert factors("per_id=4") == [("per_id", [4])]
    with pytest.raises(SystemExit, match="unknown factor"):
        factors("shares=0.2")
