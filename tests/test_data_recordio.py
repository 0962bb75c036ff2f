"""insightface RecordIO packs: round trips through a writer built from the format, split records, corrupt packs."""
from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from rgsyn.data.records import LayoutError
from rgsyn.data.recordio import MAGIC, RecordIOPack, load_encoded, load_recordio

MAGIC_BYTES = struct.pack("<I", MAGIC)


# --- a writer from the format description (dmlc-core RecordIO + mxnet.recordio.pack semantics)
def write_parts(f, payload: bytes) -> None:
    """Cut the payload at every 4-byte-aligned magic (dropping it): cflag 1 first, 2 middle, 3 last; 0 whole."""
    cuts = [i for i in range(0, len(payload) // 4 * 4, 4) if payload[i:i + 4] == MAGIC_BYTES]
    bounds = [0] + [c + 4 for c in cuts]
    parts = [payload[b:e] for b, e in zip(bounds, cuts + [len(payload)])]
    for j, part in enumerate(parts):
        cflag = 0 if len(parts) == 1 else 1 if j == 0 else 3 if j == len(parts) - 1 else 2
        f.write(MAGIC_BYTES + struct.pack("<I", cflag << 29 | len(part)) + part + b"\0" * (-len(part) % 4))


def pack(label, img: bytes = b"", id1: int = 0, id2: int = 0) -> bytes:
    if isinstance(label, (list, tuple)):
        return struct.pack("<IfQQ", len(label), 0.0, id1, id2) + np.asarray(label, "<f4").tobytes() + img
    return struct.pack("<IfQQ", 0, float(label), id1, id2) + img


def write_pack(prefix, records: list[tuple[int, bytes]]) -> None:
    with open(f"{prefix}.rec", "wb") as rec, open(f"{prefix}.idx", "w") as idx:
        for key, payload in records:
            idx.write(f"{key}\t{rec.tell()}\n")
            write_parts(rec, payload)


def png(seed: int, size=(6, 5)) -> bytes:
    buf = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def insightface_pack(prefix, labels=(0, 0, 1, 2, 2, 2)):
    """Header record 0, images 1..N, identity records N+1..N+K; the header is written last on purpose."""
    n, k = len(labels), max(labels) + 1
    imgs = {i + 1: png(i) for i in range(n)}
    records = [(i, pack(labels[i - 1], imgs[i], id1=i)) for i in imgs]
    for c in range(k):
        keys = [i for i in imgs if labels[i - 1] == c]
        records.append((n + 1 + c, pack([keys[0], keys[-1] + 1])))
    records.append((0, pack([n + 1, n + 1 + k])))
    write_pack(prefix, records)
    (prefix.parent / "property").write_text(f"{k},5,6\n")
    return imgs


def test_insightface_header_pack_round_trip(tmp_path):
    labels = (0, 0, 1, 2, 2, 2)
    imgs = insightface_pack(tmp_path / "train", labels)
    for path in (tmp_path, tmp_path / "train", tmp_path / "train.rec", tmp_path / "train.idx"):
        with RecordIOPack(path) as p:
            assert p.keys == [1, 2, 3, 4, 5, 6] and len(p) == 6 and p.identity_keys == range(7, 10)
            assert p.property == "3,5,6"
            assert [p.read(k) for k in p.keys] == [(labels[k - 1], imgs[k]) for k in p.keys]
            assert p.labels().tolist() == list(labels)
            assert p.read_record(8)[0].label == (3.0, 4.0)  # identity 1: images 3..3
            img = p.image(3)
            assert img.shape == (5, 6, 3) and (img == np.asarray(Image.open(io.BytesIO(imgs[3])))).all()
    assert p._f.closed
    samples, classes = load_recordio(tmp_path)
    assert classes == ["0", "1", "2"] and [c for _, c in samples] == list(labels)
    assert [b for b, _ in samples] == [imgs[k] for k in range(1, 7)]
    x = load_encoded([b for b, _ in samples], 5, 6)
    assert x.shape == (6, 3, 5, 6) and str(x.dtype) == "torch.uint8"


def test_pack_without_header_is_all_images(tmp_path):
    imgs = [png(10 + i) for i in range(4)]
    write_pack(tmp_path / "train", [(i, pack(7 - i, b)) for i, b in enumerate(imgs)])
    with RecordIOPack(tmp_path / "train") as p:
        assert p.keys == [0, 1, 2, 3] and p.labels().tolist() == [7, 6, 5, 4]
        assert p.read(2) == (5, imgs[2])
    samples, classes = load_recordio(tmp_path / "train.rec")
    assert classes == ["4", "5", "6", "7"] and [c for _, c in samples] == [0, 1, 2, 3]
    assert samples[0][0] == imgs[3]


def test_payload_with_magic_is_split_and_joined(tmp_path):
    base = png(3)
    img = base + b"\0" * (-(24 + len(base)) % 4)  # PNG decoders ignore bytes after IEND
    img += MAGIC_BYTES + b"abcd" + MAGIC_BYTES + MAGIC_BYTES + b"xy" + MAGIC_BYTES  # middle parts, one empty
    payloads = {
        1: pack(5, img, id1=MAGIC),  # the header's id field is the magic: a first part of 8 bytes
        2: pack(6, png(4) + b"\0" * (-(24 + len(png(4))) % 4) + MAGIC_BYTES),  # magic last: empty last part
        3: pack([9, 1.5], png(5)),  # multi-label record: the class is label[0]
    }
    write_pack(tmp_path / "train", list(payloads.items()))
    raw = (tmp_path / "train.rec").read_bytes()
    flags = []
    pos = 0
    while pos < len(raw):
        magic, lrec = struct.unpack_from("<II", raw, pos)
        assert magic == MAGIC
        flags.append(lrec >> 29)
        pos += 8 + ((lrec & (2 ** 29 - 1)) + 3) // 4 * 4
    # record 1: cut at the id field, after the PNG, after "abcd", between the two magics; the magic
    # after "xy" is not 4-byte aligned and stays data. Record 2: an empty last part. Record 3: whole.
    assert flags == [1, 2, 2, 2, 3, 1, 3, 0]
    with RecordIOPack(tmp_path / "train") as p:
        assert p.read(1) == (5, img) and p.header(1).id == MAGIC
        assert p.read_record(1)[0].label == 5.0
        assert p.read(2)[0] == 6 and p.read(2)[1].endswith(MAGIC_BYTES)
        assert p.read(3)[0] == 9 and p.read_record(3)[0].label == (9.0, 1.5)
        assert p.labels().tolist() == [5, 6, 9]
        assert (p.image(1) == np.asarray(Image.open(io.BytesIO(base)).convert("RGB"))).all()


def _offsets(tmp_path):
    return [int(line.split("\t")[1]) for line in (tmp_path / "train.idx").read_text().splitlines()]


def test_corrupt_packs_name_the_offset(tmp_path):
    insightface_pack(tmp_path / "train")
    good = (tmp_path / "train.rec").read_bytes()
    offs = _offsets(tmp_path)

    bad = bytearray(good)
    bad[offs[2]] ^= 0xFF  # flipped magic of key 3
    (tmp_path / "train.rec").write_bytes(bytes(bad))
    with RecordIOPack(tmp_path) as p:
        with pytest.raises(LayoutError, match=f"offset {offs[2]}.*magic|magic.*offset {offs[2]}"):
            p.read(3)
    with pytest.raises(LayoutError, match=f"key 3.*{offs[2]}"):
        load_recordio(tmp_path)

    (tmp_path / "train.rec").write_bytes(good[:offs[-1] + 20])  # truncated inside the header record (last)
    with pytest.raises(LayoutError, match=f"key 0: part at byte offset {offs[-1]}.*truncated"):
        RecordIOPack(tmp_path)

    (tmp_path / "train.rec").write_bytes(good)
    lines = (tmp_path / "train.idx").read_text().splitlines()
    lines[1] = f"2\t{offs[1] + 8}"  # points into the payload of key 2
    (tmp_path / "train.idx").write_text("\n".join(lines) + "\n")
    with RecordIOPack(tmp_path) as p:
        with pytest.raises(LayoutError, match=f"offset {offs[1] + 8}.*no record starts there"):
            p.read(2)
    lines[1] = f"2\t{len(good) + 400}"  # past the end of the file
    (tmp_path / "train.idx").write_text("\n".join(lines) + "\n")
    with RecordIOPack(tmp_path) as p, pytest.raises(LayoutError, match=f"offset {len(good) + 400}"):
        p.read(2)


def test_bad_image_index_and_missing_files(tmp_path):
    write_pack(tmp_path / "train", [(0, pack(0, png(1))), (1, pack(1, b"not an image at all"))])
    with RecordIOPack(tmp_path) as p:
        assert p.read(1) == (1, b"not an image at all")
        with pytest.raises(LayoutError, match=f"key 1 \\(byte offset {_offsets(tmp_path)[1]}\\).*does not decode"):
            p.image(1)
    with pytest.raises(LayoutError, match="key 1.*unreadable image"):
        load_recordio(tmp_path)
    (tmp_path / "train.idx").write_text("0\t0\nbroken line\n")
    with pytest.raises(LayoutError, match="train.idx, line 2"):
        RecordIOPack(tmp_path)
    (tmp_path / "train.idx").unlink()
    with pytest.raises(LayoutError, match="train.idx: file not found.*rec2idx"):
        RecordIOPack(tmp_path)
    with pytest.raises(LayoutError, match="nowhere.rec: file not found"):
        RecordIOPack(tmp_path / "nowhere")
    # an insightface header whose image keys are missing from the .idx
    insightface_pack(tmp_path / "train")
    lines = (tmp_path / "train.idx").read_text().splitlines()
    (tmp_path / "train.idx").write_text("\n".join(line for line in lines if not line.startswith("1\t")) + "\n")
    with pytest.raises(LayoutError, match="header record \\(key 0, byte offset \\d+\\).*lacks key 1"):
        RecordIOPack(tmp_path)
    # the older dmlc magic gets its own explanation
    write_pack(tmp_path / "train", [(0, pack(0, png(1)))])
    raw = bytearray((tmp_path / "train.rec").read_bytes())
    raw[:4] = struct.pack("<I", 0x3ED7230A)
    (tmp_path / "train.rec").write_bytes(bytes(raw))
    with pytest.raises(LayoutError, match="older dmlc RecordIO layout"):
        RecordIOPack(tmp_path)
