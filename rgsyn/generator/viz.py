"""Sample grids: rows of uint8 images -> one PNG whose header says what each column block shows
(real or generated), so a grid reads without the code that drew it."""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> uint8."""
    return ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8)


def labelled_grid(rows: list[list[torch.Tensor]], path: str | Path, groups: list[tuple[str, int]],
                  row_labels: list[str] | None = None, title: str = "", scale: int = 2, gap: int = 2) -> Path:
    """rows[i][g]: uint8 images (n, 3, H, W) of column block g in row i (n ≤ the block's width; missing
    cells stay grey). groups[g] = (header text, block width in images); `title` above everything.
    Returns the PNG path."""
    h, w = next(b for r in rows for b in r if len(b)).shape[-2:]
    cw, ch = (w + gap) * scale, (h + gap) * scale
    left = 48 if row_labels else 0
    widths = [max(n, -(-6 * len(text) // cw)) for text, n in groups]  # a block is at least as wide as its header
    top = 14 + (14 if title else 0)
    width = max(left + sum(widths) * cw + gap * scale * len(groups), 6 * len(title) + 4)
    canvas = Image.new("RGB", (width, top + len(rows) * ch), (128,) * 3)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((2, 1), title, fill=(255, 255, 255))
    x0 = [left + sum(widths[:g]) * cw + g * gap * scale for g in range(len(groups))]
    for g, (text, n) in enumerate(groups):
        draw.text((x0[g] + 2, top - 13), text, fill=(255, 255, 255))
    for i, row in enumerate(rows):
        y = top + i * ch
        if row_labels:
            draw.text((2, y + ch // 2 - 5), row_labels[i], fill=(255, 255, 255))
        for g, block in enumerate(row):
            for j, img in enumerate(block[:groups[g][1]]):
                tile = Image.fromarray(img.permute(1, 2, 0).numpy()).resize((w * scale, h * scale), Image.NEAREST)
                canvas.paste(tile, (x0[g] + j * cw, y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path

