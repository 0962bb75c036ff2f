"""insightface training packs (``train.rec`` + ``train.idx`` [+ ``property``]) read without MXNet.

CASIA-WebFace, MS1M and their insightface re-releases ship as MXNet ``MXIndexedRecordIO`` files; the
format is small enough to read directly, which spares a dependency on MXNet (a retired framework, last
released in 2022) that nothing else here needs.

``.rec`` (dmlc-core RecordIO, little-endian): a sequence of parts, each

    uint32 magic = 0xced7230a
    uint32 lrecord: cflag = lrecord >> 29 (3 bits), length = lrecord & (2**29 - 1)
    payload (length bytes), then zero padding to a 4-byte boundary

cflag 0 is a whole record. The writer scans the payload at 4-byte-aligned positions for the magic
number and, where it finds it, cuts the record there: cflag 1 (first part), 2 (middle), 3 (last),
dropping the magic (cuts are aligned, so only the last part ever needs padding); the reader joins
the parts with the magic put back between them. (An older
dmlc-core used magic 0x3ed7230a with a 2-bit cflag; such files are refused with that explanation.)

``.idx``: text lines ``key<TAB>offset``, offset = byte position of the record's first part.

Record payload (``mxnet.recordio.pack``): header ``<IfQQ`` = (flag uint32, label float32, id uint64,
id2 uint64), 24 bytes; when flag > 0, ``flag`` float32 labels follow and replace the scalar; the rest
is the encoded image (JPEG/PNG).

insightface convention: record 0 is a header whose label is the pair (first identity key, one past
the last), so flag = 2; images are keys 1 .. label[0]-1 with the class id as label (or as label[0]); identity
records hold (start, end) image-key ranges and are not images. A pack without that header (record 0 is
an image, flag 0) is all images: every key of the ``.idx``, in its order.
"""
from __future__ import annotations

import io
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .records import LayoutError

MAGIC = 0xCED7230A
OLD_MAGIC = 0x3ED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_PART = struct.Struct("<II")
_IR = struct.Struct("<IfQQ")
_LEN_MASK = (1 << 29) - 1
REPACK = ("re-download the pack (both train.rec and train.idx, from the same release), or rebuild the index "
          "from the .rec with MXNet's tools/rec2idx.py")


@dataclass(frozen=True)
class IRHeader:
    flag: int
    label: float | tuple[float, ...]  # a tuple when flag > 0
    id: int
    id2: int


class RecordIOPack:
    """Random access to the image records of an indexed RecordIO pack.

    ``path``: the prefix (``.../train``), the ``.rec`` or ``.idx`` file, or the folder holding
    ``train.rec``. ``keys`` are the image keys (see the module docstring), ``len`` their number.
    One open file handle: use one pack per thread or process; ``with`` closes it.
    """

    def __init__(self, path: str | os.PathLike):
        p = Path(path)
        prefix = p / "train" if p.is_dir() else p.with_suffix("") if p.suffix in (".rec", ".idx") else p
        self.rec_path, self.idx_path = Path(f"{prefix}.rec"), Path(f"{prefix}.idx")
        if not self.rec_path.is_file():
            raise LayoutError(f"{self.rec_path}: file not found. Expected an insightface RecordIO pack: "
                              f"<prefix>.rec + <prefix>.idx (e.g. faces_webface_112x112/train.rec).")
        self.offsets = self._read_idx()
        self.size = self.rec_path.stat().st_size
        self._f = open(self.rec_path, "rb")
        prop = prefix.parent / "property"
        self.property = prop.read_text().strip() if prop.is_file() else None  # "num_classes,h,w"
        try:
            self.keys, self.identity_keys = self._image_keys()
        except BaseException:
            self._f.close()
            raise

    def _image_keys(self) -> tuple[list[int], range]:
        first = 0 if 0 in self.offsets else next(iter(self.offsets))
        head = self.header(first)  # reading one record early reports a mismatched .idx at once
        if first != 0 or head.flag < 2:
            return list(self.offsets), range(0)
        # float32 labels are exact integers only up to 2**24 keys (CASIA and MS1M stay far below)
        start, end = int(head.label[0]), int(head.label[1])
        missing = [k for k in (1, start - 1) if start > 1 and k not in self.offsets]
        if start < 1 or end < start or missing:
            why = f"{self.idx_path} lacks key {missing[0]}" if missing else "that is not a valid key range"
            raise LayoutError(
                f"{self.rec_path}: header record (key 0, byte offset {self.offsets[0]}) says images are keys "
                f"1..{start - 1} and identities {start}..{end - 1}, but {why}. The .idx does not match the .rec "
                f"or the header is corrupt: {REPACK}.")
        return list(range(1, start)), range(start, end)

    def _read_idx(self) -> dict[int, int]:
        if not self.idx_path.is_file():
            raise LayoutError(f"{self.idx_path}: file not found; the .rec needs its index for random access. "
                              f"Rebuild it from the .rec with MXNet's tools/rec2idx.py, or re-download the pack.")
        offsets: dict[int, int] = {}
        with open(self.idx_path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                fields = line.strip().split("\t")
                if len(fields) != 2 or not all(x.isdigit() for x in fields):
                    raise LayoutError(f"{self.idx_path}, line {n}: {line.strip()[:60]!r} is not 'key<TAB>offset'. "
                                      f"The index is corrupt: {REPACK}.")
                offsets[int(fields[0])] = int(fields[1])
        if not offsets:
            raise LayoutError(f"{self.idx_path}: empty index (no 'key<TAB>offset' lines): {REPACK}.")
        return offsets

    # --- raw records
    def _payload(self, key: int, limit: int | None = None) -> bytes:
        """The logical record of ``key`` (parts joined); with ``limit``, at least its first ``limit`` bytes."""
        if key not in self.offsets:
            raise KeyError(f"key {key} is not in {self.idx_path}")
        start = pos = self.offsets[key]
        where = f"{self.rec_path}: key {key}"
        if pos % 4 or pos + 8 > self.size:
            raise LayoutError(f"{where}: {self.idx_path} gives byte offset {pos}, where no record can start "
                              f"(records are 4-byte aligned and the file has {self.size} bytes): {REPACK}.")
        parts, got = [], 0
        while True:
            self._f.seek(pos)
            head = self._f.read(8)
            if len(head) < 8:
                raise LayoutError(f"{where}: the record at byte offset {start} continues at offset {pos}, past the "
                                  f"end of the file ({self.size} bytes). The file is truncated: {REPACK}.")
            magic, lrec = _PART.unpack(head)
            cflag, length = lrec >> 29, lrec & _LEN_MASK
            if magic != MAGIC:
                old = (" This is the older dmlc RecordIO layout (magic 0x3ed7230a), not read here; re-pack the "
                       "images with a current MXNet im2rec." if magic == OLD_MAGIC else "")
                what = ("no record starts there; the .idx does not belong to this .rec or the .rec is corrupt"
                        if pos == start else f"the record that starts at byte offset {start} is corrupt")
                raise LayoutError(f"{where}: expected the RecordIO magic 0xced7230a at byte offset {pos}, found "
                                  f"0x{magic:08x}: {what}.{old} Fix: {REPACK}.")
            if cflag not in ((0, 1) if pos == start else (2, 3)):
                raise LayoutError(f"{where}: part at byte offset {pos} has continuation flag {cflag}, which cannot "
                                  f"{'start' if pos == start else 'continue'} a record (record at {start}). The "
                                  f"index points into the middle of a record or the .rec is corrupt: {REPACK}.")
            if pos + 8 + length > self.size:
                raise LayoutError(f"{where}: part at byte offset {pos} declares {length} bytes, running past the end "
                                  f"of the file ({self.size} bytes). The file is truncated: {REPACK}.")
            take = length if limit is None else max(0, min(length, limit - got))
            parts.append(self._f.read(take))
            got += take
            if cflag in (0, 3) or (limit is not None and got >= limit):
                return _MAGIC_BYTES.join(parts)
            got += 4  # the magic that joins this part to the next
            pos += 8 + ((length + 3) & ~3)

    def header(self, key: int) -> IRHeader:
        """The image-record header of ``key`` (reads only the first bytes of the record)."""
        s = self._payload(key, limit=_IR.size)
        flag = _IR.unpack_from(s)[0] if len(s) >= _IR.size else 0
        return self._unpack(key, self._payload(key, limit=_IR.size + 4 * flag) if flag else s)[0]

    def _unpack(self, key: int, s: bytes) -> tuple[IRHeader, bytes]:
        if len(s) < _IR.size:
            raise LayoutError(f"{self.rec_path}: key {key} (byte offset {self.offsets[key]}) holds {len(s)} bytes, "
                              f"too short for the 24-byte image-record header; this is not an image pack: {REPACK}.")
        flag, label, id1, id2 = _IR.unpack_from(s)
        body = s[_IR.size:]
        if flag > 0:
            if len(body) < 4 * flag:
                raise LayoutError(f"{self.rec_path}: key {key} (byte offset {self.offsets[key]}) announces {flag} "
                                  f"float labels but holds {len(body)} bytes after its header: {REPACK}.")
            label = tuple(float(x) for x in np.frombuffer(body, "<f4", flag))
            body = body[4 * flag:]
        return IRHeader(flag, label, id1, id2), body

    def read_record(self, key: int) -> tuple[IRHeader, bytes]:
        """Any key of the ``.idx`` (headers and identity records too) -> (header, bytes after the labels)."""
        return self._unpack(key, self._payload(key))

    # --- images
    @staticmethod
    def _class(h: IRHeader) -> int:
        return int(h.label[0] if h.flag > 0 else h.label)

    def read(self, key: int) -> tuple[int, bytes]:
        """-> (class id, encoded image bytes) of image ``key``."""
        h, body = self.read_record(key)
        return self._class(h), body

    def image(self, key: int) -> np.ndarray:
        """Decoded image ``key`` -> uint8 (H, W, 3), RGB."""
        _, body = self.read(key)
        try:
            with Image.open(io.BytesIO(body)) as im:
                return np.asarray(im.convert("RGB"))
        except Exception as e:  # noqa: BLE001 — any decoder failure is a data error for the user
            raise LayoutError(f"{self.rec_path}: key {key} (byte offset {self.offsets[key]}): the image does not "
                              f"decode ({type(e).__name__}: {e}). The pack is corrupt: {REPACK}.") from e

    def labels(self) -> np.ndarray:
        """Class id of every image, in ``keys`` order -> int64 (len,). Reads only the record headers."""
        return np.array([self._class(self.header(k)) for k in self.keys], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.keys)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> RecordIOPack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_recordio(root: str | os.PathLike, check_images: bool = True) -> tuple[list[tuple[bytes, int]], list[str]]:
    """Read a whole pack the way ``imagefolder.load`` reads a folder -> ``(samples, classes)``.

    ``samples`` are ``(encoded image bytes, class_index)`` — in memory, not paths: a pack has no
    per-image files — sorted by class then key; ``classes`` are the pack's class ids as strings,
    sorted numerically (``classes[i]`` is class ``i``; insightface ids are 0..K-1, so index = id).
    Decode with ``load_encoded``, the counterpart of ``images.load_images``. MS1M-sized packs do not
    fit in memory this way: iterate a ``RecordIOPack`` instead. With ``check_images`` every image
    header is checked with PIL, so a corrupt image raises LayoutError here, naming key and offset.
    """
    with RecordIOPack(root) as pack:
        records = []
        for k in pack.keys:
            label, body = pack.read(k)
            if check_images:
                try:
                    with Image.open(io.BytesIO(body)) as im:
                        im.verify()
                except Exception as e:  # noqa: BLE001
                    raise LayoutError(f"{pack.rec_path}: key {k} (byte offset {pack.offsets[k]}): unreadable image "
                                      f"({type(e).__name__}: {e}). The pack is corrupt: {REPACK}.") from e
            records.append((label, k, body))
    ids = sorted({label for label, _, _ in records})
    index = {c: i for i, c in enumerate(ids)}
    samples = [(body, index[label]) for label, _, body in sorted(records, key=lambda r: (r[0], r[1]))]
    return samples, [str(c) for c in ids]


def load_encoded(blobs: list[bytes], height: int, width: int, threads: int = 4) -> torch.Tensor:
    """Decode and resize encoded images -> uint8 tensor (N, 3, H, W), with the filter ``load_images`` uses."""
    def one(i_b):
        i, b = i_b
        try:
            with Image.open(io.BytesIO(b)) as im:
                im = im.convert("RGB")
                if im.size != (width, height):
                    im = im.resize((width, height), Image.BILINEAR)
                return np.asarray(im, dtype=np.uint8)
        except Exception as e:  # noqa: BLE001
            raise LayoutError(f"sample {i}: cannot decode image ({e}); the pack is corrupt: {REPACK}.") from e

    if not blobs:
        return torch.zeros(0, 3, height, width, dtype=torch.uint8)
    with ThreadPoolExecutor(threads) as ex:
        arrs = list(ex.map(one, enumerate(blobs)))
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
