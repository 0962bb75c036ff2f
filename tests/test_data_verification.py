"""insightface verification .bin files: round trips, Python 2 pickles, and refusal of unsafe pickles."""
from __future__ import annotations

import builtins
import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from rgsyn.data import verification as V
from rgsyn.data.records import LayoutError


def encoded(color, fmt="JPEG", size=(12, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def pairs():
    bins = [encoded((255, 0, 0)), encoded((0, 255, 0), "PNG"), encoded((0, 0, 255)), encoded((9, 9, 9), "PNG")]
    return bins, [True, False]


def py2_pickle(bins, issame) -> bytes:
    """The bytes Python 2 writes for pickle.dump((bins, issame), f, protocol=2) with str images."""
    out = b"\x80\x02" + b"](" + b"".join(b"T" + struct.pack("<I", len(b)) + b for b in bins) + b"e"
    out += b"](" + b"".join(b"\x88" if s else b"\x89" for s in issame) + b"e"
    return out + b"\x86."  # TUPLE2, STOP


def test_round_trip(tmp_path, pairs):
    V.write_bin(tmp_path / "lfw.bin", *pairs)
    assert V.read_bin(tmp_path / "lfw.bin") == pairs


def test_reads_plain_pickle_dump(tmp_path, pairs):
    """The way insightface's tools write a .bin under Python 3."""
    with open(tmp_path / "agedb_30.bin", "wb") as f:
        pickle.dump((pairs[0], pairs[1]), f, protocol=pickle.HIGHEST_PROTOCOL)
    assert V.read_bin(tmp_path / "agedb_30.bin") == pairs


def test_reads_python2_pickle(tmp_path, pairs):
    (tmp_path / "cfp_fp.bin").write_bytes(py2_pickle(*pairs))
    assert V.read_bin(tmp_path / "cfp_fp.bin") == pairs


def test_write_bin_accepts_numpy_bools(tmp_path, pairs):
    V.write_bin(tmp_path / "x.bin", pairs[0], list(np.array(pairs[1])))
    assert V.read_bin(tmp_path / "x.bin")[1] == [True, False]


class _SystemPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _EvalPayload(_SystemPayload):
    def __reduce__(self):
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


@pytest.mark.parametrize("payload,glob", [(_SystemPayload, "system"), (_EvalPayload, "builtins.eval")])
def test_malicious_pickle_refused_and_not_run(tmp_path, pairs, payload, glob):
    marker = tmp_path / "PWNED"
    for obj in (payload(marker), (pairs[0], [payload(marker), False])):
        path = tmp_path / "evil.bin"
        path.write_bytes(pickle.dumps(obj))
        with pytest.raises(LayoutError, match=f"evil.bin: refused.*{glob}"):
            V.read_bin(path)
        assert not marker.exists()


def test_eval_payload_is_live(tmp_path):
    """Control: the payload above does run under a plain pickle.loads, so the test above means something."""
    marker = tmp_path / "PWNED"
    pickle.loads(pickle.dumps(_EvalPayload(marker)))
    assert marker.read_text() == "pwned"


def test_numpy_issame_refused(tmp_path, pairs):
    with open(tmp_path / "np.bin", "wb") as f:
        pickle.dump((pairs[0], np.array(pairs[1])), f)
    with pytest.raises(LayoutError, match="numpy.*list of bool"):
        V.read_bin(tmp_path / "np.bin")


@pytest.mark.parametrize("obj,msg", [
    (lambda b, s: (b[:3], s), "3 images for 2 pairs"),
    (lambda b, s: (b, s + [True]), "4 images for 3 pairs"),
    (lambda b, s: (b, [1, 0]), r"issame_list\[0\] is 1"),
    (lambda b, s: (b[:3] + ["x"], s), r"bins\[3\] is a str"),
    (lambda b, s: (b, s, "extra"), "expected a pair"),
    (lambda b, s: {"bins": b}, "expected a pair"),
    (lambda b, s: ([], []), "no pairs"),
])
def test_bad_contents_refused(tmp_path, pairs, obj, msg):
    path = tmp_path / "bad.bin"
    path.write_bytes(pickle.dumps(obj(*pairs), protocol=4))
    with pytest.raises(LayoutError, match=msg):
        V.read_bin(path)


def test_write_bin_validates(tmp_path, pairs):
    with pytest.raises(ValueError, match="3 images for 2 pairs"):
        V.write_bin(tmp_path / "out.bin", pairs[0][:3], pairs[1])
    with pytest.raises(ValueError, match="expected True/False"):
        V.write_bin(tmp_path / "out.bin", pairs[0], [1, 0])
    assert not (tmp_path / "out.bin").exists()


def test_not_a_pickle(tmp_path):
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01garbage")
    with pytest.raises(LayoutError, match="junk.bin: not a readable pickle"):
        V.read_bin(tmp_path / "junk.bin")
    with pytest.raises(LayoutError, match="file not found"):
        V.read_bin(tmp_path / "missing.bin")


def test_decode_images(pairs):
    x = V.decode_images(pairs[0])
    assert x.shape == (4, 3, 10, 12) and x.dtype == torch.float32 and x.is_contiguous()
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert torch.allclose(x[1, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]))  # PNG, lossless green
    assert V.decode_images(pairs[0], size=(7, 5)).shape == (4, 3, 7, 5)
    assert V.decode_images(pairs[0], size=6).shape == (4, 3, 6, 6)


def test_decode_images_errors(pairs):
    with pytest.raises(LayoutError, match="pass size="):
        V.decode_images([pairs[0][0], encoded((1, 2, 3), size=(5, 5))])
    with pytest.raises(LayoutError, match=r"bins\[1\]: cannot decode"):
        V.decode_images([pairs[0][0], b"not an image"])
