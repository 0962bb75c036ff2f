"""Face verification pair files in insightface's ``.bin`` format (lfw.bin, cfp_fp.bin, agedb_30.bin...).

On-disk format: one pickle of the pair ``(bins, issame_list)``:

* ``bins``        list of 2N encoded images (JPEG/PNG file bytes), pair ``i`` is
                  ``bins[2*i], bins[2*i+1]``;
* ``issame_list`` list of N Python bools, True when pair ``i`` shows the same person.

The published files were pickled from Python 2 (``str`` images), so they are read with
``encoding="bytes"``, which turns Python 2 ``str`` into ``bytes``.

Safety: unpickling can run arbitrary code (a pickle may name any importable function, e.g.
``os.system``, and call it). ``read_bin`` therefore uses an unpickler whose ``find_class`` refuses
*every* global: only the pickle opcodes that build plain containers and scalars (lists, tuples,
bytes, str, bool, int, None...) work. Consequences, on purpose:

* an ``issame_list`` stored as a numpy bool array (needs ``numpy.core.multiarray._reconstruct``)
  is refused; convert such a file once, in a trusted environment, with
  ``write_bin(path, bins, [bool(x) for x in issame])``;
* a file written by Python 3 with pickle protocol 0-2 stores bytes through ``_codecs.encode`` and is
  refused too; re-write it with ``write_bin`` (protocol 4).
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .records import LayoutError

FIX_HINT = (
    "Only a plain pickle of (list of bytes, list of bool) is accepted; convert the file once in a "
    "trusted environment with rgsyn.data.verification.write_bin(path, bins, [bool(x) for x in issame])."
)


class _ForbiddenGlobal(pickle.UnpicklingError):
    pass


class _PlainUnpickler(pickle.Unpickler):
    """An unpickler that can build only builtin containers and scalars: every global is refused."""

    def find_class(self, module: str, name: str):
        raise _ForbiddenGlobal(f"{module}.{name}")


def _check_pair(obj, where: str) -> tuple[list[bytes], list[bool]]:
    """Validate a loaded ``(bins, issame)`` object; raise LayoutError saying what is wrong."""
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise LayoutError(f"{where}: expected a pair (bins, issame_list), got {type(obj).__name__}"
                          f"{f' of length {len(obj)}' if isinstance(obj, (tuple, list)) else ''}. {FIX_HINT}")
    bins, issame = obj
    for label, seq in (("bins", bins), ("issame_list", issame)):
        if not isinstance(seq, (list, tuple)):
            raise LayoutError(f"{where}: {label} is a {type(seq).__name__}, expected a list. {FIX_HINT}")
    for i, b in enumerate(bins):
        if not isinstance(b, bytes):
            raise LayoutError(f"{where}: bins[{i}] is a {type(b).__name__}, expected encoded image "
                              f"bytes. {FIX_HINT}")
    for i, s in enumerate(issame):
        if type(s) is not bool:
            raise LayoutError(f"{where}: issame_list[{i}] is {s!r} ({type(s).__name__}), expected "
                              f"True/False. {FIX_HINT}")
    if not issame:
        raise LayoutError(f"{where}: issame_list is empty, the file holds no pairs.")
    if len(bins) != 2 * len(issame):
        raise LayoutError(f"{where}: {len(bins)} images for {len(issame)} pairs; a .bin needs exactly "
                          f"2 images per pair ({2 * len(issame)}). The file is truncated or not a "
                          f"verification .bin.")
    return list(bins), list(issame)


def read_bin(path: str | os.PathLike) -> tuple[list[bytes], list[bool]]:
    """Read an insightface verification ``.bin`` safely; returns ``(bins, issame_list)``.

    Raises LayoutError naming the file when it is missing, is not a pickle, asks for any global
    (class/function: refused without running anything), or does not hold 2N bytes + N bools.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = _PlainUnpickler(f, encoding="bytes").load()
    except FileNotFoundError as e:
        raise LayoutError(f"{path}: file not found; expected an insightface verification .bin.") from e
    except _ForbiddenGlobal as e:
        raise LayoutError(
            f"{path}: refused to unpickle: the file asks for the global '{e}'. Globals are never "
            f"loaded (they can run arbitrary code; numpy arrays need them too). {FIX_HINT}"
        ) from None
    except Exception as e:  # UnpicklingError, EOFError, ValueError, MemoryError... from a bad file
        raise LayoutError(
            f"{path}: not a readable pickle ({type(e).__name__}: {e}); expected an insightface "
            f"verification .bin (a pickle of (bins, issame_list))."
        ) from e
    return _check_pair(obj, str(path))


def write_bin(path: str | os.PathLike, bins: Sequence[bytes], issame: Sequence[bool]) -> None:
    """Write ``(bins, issame)`` as plain lists with pickle protocol 4 (readable by ``read_bin`` and
    by insightface's own loader). numpy bools in ``issame`` are converted to Python bools."""
    issame = [bool(s) if isinstance(s, np.bool_) else s for s in issame]
    bins = [bytes(b) if isinstance(b, bytearray) else b for b in bins]
    bins, issame = _check_pair((bins, issame), f"write_bin({path})")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump((bins, issame), f, protocol=4)
    os.replace(tmp, path)


def decode_images(bins: Sequence[bytes], size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Decode encoded images to a float tensor ``[len(bins), 3, H, W]`` in [0, 1], RGB.

    ``size`` (``H`` or ``(H, W)``) resizes every image (bilinear); without it all images must
    already share one size (insightface files are 112x112 aligned faces).
    """
    if isinstance(size, int):
        size = (size, size)
    out: np.ndarray | None = None
    for i, b in enumerate(bins):
        try:
            with Image.open(io.BytesIO(b)) as im:
                im = im.convert("RGB")
        except Exception as e:
            raise LayoutError(f"bins[{i}]: cannot decode image ({type(e).__name__}: {e})") from e
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        a = np.asarray(im)
        if out is None:
            out = np.empty((len(bins), *a.shape), dtype=np.uint8)
        elif a.shape != out.shape[1:]:
            raise LayoutError(f"bins[{i}]: image is {a.shape[1]}x{a.shape[0]} but bins[0] is "
                              f"{out.shape[2]}x{out.shape[1]}; pass size= to resize them all.")
        out[i] = a
    if out is None:
        h, w = size if size is not None else (0, 0)
        return torch.empty((0, 3, h, w))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
