"""Sample grids: rows of images in [-1, 1] (or uint8) -> one PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> uint8."""
    return ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8)


def save_grid(rows: list[torch.Tensor], path: str | Path, scale: int = 2, gap: int = 2) -> Path:
    """Each row a uint8 batch (n, 3, H, W); rows may differ in length. Grey gaps between cells."""
    h, w = rows[0].shape[-2:]
    ncol = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (h + gap), ncol * (w + gap), 3), 128, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            canvas[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = img.permute(1, 2, 0).numpy()
    im = Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path
