"""Decoding, batching and GPU-side augmentation of identity images.

Real re-id train sets are scarce by definition, so the trainer decodes every image once into a uint8
tensor (N, 3, H, W) and augments whole batches on the device: no DataLoader workers to tune on a
2-core laptop, and the same code runs a full Market-1501 on a GPU.
"""
from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from rgsyn.data.records import LayoutError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


_PACKS: dict = {}  # RecordIO packs opened by this process, by .rec path
_PACK_LOCK = threading.Lock()  # a pack is one file handle: seek + read must not interleave across threads


def _open(path: str):
    """A file, or a record `<pack>.rec#<key>` of an insightface RecordIO pack (rgsyn.data.recordio)."""
    rec, sep, key = path.rpartition("#")
    if not sep or not rec.endswith(".rec"):
        return Image.open(path)
    with _PACK_LOCK:
        if rec not in _PACKS:
            from rgsyn.data.recordio import RecordIOPack

            _PACKS[rec] = RecordIOPack(rec)
        body = _PACKS[rec].read(int(key))[1]
    return Image.open(io.BytesIO(body))


def _read(path: str, height: int, width: int) -> np.ndarray:
    try:
        with _open(path) as im:
            im = im.convert("RGB")
            if im.size != (width, height):
                im = im.resize((width, height), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except Exception as e:  # noqa: BLE001 — any decoder failure is a data error for the user
        raise LayoutError(f"{path}: cannot decode image ({e}); remove or replace the file.") from e


def resize_images(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> (N, 3, height, width) with the same PIL filter `load_images` applies to files."""
    if x.shape[-2:] == (height, width):
        return x
    arrs = [np.asarray(Image.fromarray(a).resize((width, height), Image.BILINEAR)) for a in x.permute(0, 2, 3, 1).numpy()]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()


def load_images(paths: list[str], height: int, width: int, threads: int = 4) -> torch.Tensor:
    """Decode and resize `paths` -> uint8 tensor (N, 3, H, W)."""
    if not paths:
        return torch.zeros(0, 3, height, width, dtype=torch.uint8)
    with ThreadPoolExecutor(threads) as ex:
        arrs = list(ex.map(lambda p: _read(p, height, width), paths))
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)


def normalize(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, ImageNet-normalised (what timm backbones expect)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x_uint8.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x_uint8.device).view(1, 3, 1, 1)
    return (x_uint8.float() / 255.0 - mean) / std


def train_views(x: torch.Tensor, flip: bool, pad: int) -> list[torch.Tensor]:
    """Fixed views of a normalised batch (B, 3, H, W) that `augment`'s flip and pad + crop produce: the
    batch itself, its mirror, and the two extreme crops of the zero-padded batch (shifted by `pad`
    pixels down-right and up-left). Differentiable; what a reward averages so no single view of an
    image can be gamed."""
    h, w = x.shape[-2:]
    out = [x] + ([x.flip(-1)] if flip else [])
    if pad > 0:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        out += [xp[..., :h, :w], xp[..., 2 * pad:2 * pad + h, 2 * pad:2 * pad + w]]
    return out


def augment(x: torch.Tensor, g: torch.Generator, flip: bool, pad: int, erasing: float) -> torch.Tensor:
    """The BoT re-id augmentations on a normalised batch (B, 3, H, W): flip, pad + crop, erasing.

    `g` is a CPU generator so a seed fixes the augmentations whatever the device.
    """
    b, _, h, w = x.shape
    if flip:
        m = torch.rand(b, generator=g) < 0.5
        x = torch.where(m.to(x.device).view(b, 1, 1, 1), x.flip(-1), x)
    if pad > 0:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=g).tolist()
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=g).tolist()
        x = torch.stack([xp[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    if erasing > 0:
        x = x.clone()
        for i in torch.nonzero(torch.rand(b, generator=g) < erasing).flatten().tolist():
            # Zhong et al.: area 2–40 %, aspect 0.3–3.3, filled with zero (the mean after normalising)
            area = h * w * float(torch.empty(1).uniform_(0.02, 0.4, generator=g))
            ratio = float(torch.exp(torch.empty(1).uniform_(np.log(0.3), np.log(3.3), generator=g)))
            eh, ew = min(h, int(round((area * ratio) ** 0.5))), min(w, int(round((area / ratio) ** 0.5)))
            y0 = int(torch.randint(0, h - eh + 1, (1,), generator=g))
            x0 = int(torch.randint(0, w - ew + 1, (1,), generator=g))
            x[i, :, y0:y0 + eh, x0:x0 + ew] = 0
    return x
