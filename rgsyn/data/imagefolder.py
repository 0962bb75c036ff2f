"""Face datasets stored as one folder per identity (the torchvision ``ImageFolder`` layout).

On-disk layout::

    <root>/
        <identity_a>/  0001.jpg  0002.png ...
        <identity_b>/  ...

* Every non-hidden sub-folder of ``<root>`` is one identity (class); classes are sorted by folder name
  and numbered 0..K-1 in that order.
* Images are the ``.jpg``/``.jpeg``/``.png`` files directly inside an identity folder; other files
  (``Thumbs.db``, ``.DS_Store``, text files) and nested sub-folders are ignored.
* Hidden folders (name starting with ``.``, e.g. ``.ipynb_checkpoints``) are not identities.

The small helpers ``is_image``, ``list_images`` and ``verify_image`` are shared by the re-id layouts.
"""
from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from .records import LayoutError

IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def is_image(name: str) -> bool:
    """True for file names ending in .jpg/.jpeg/.png (case-insensitive)."""
    return name.lower().endswith(IMAGE_EXTS)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (deterministic order)."""
    return sorted(
        (Path(e.path) for e in os.scandir(folder) if e.is_file() and is_image(e.name)),
        key=lambda p: p.name,
    )


def verify_image(path: Path) -> None:
    """Open ``path`` with PIL and check its header/structure without decoding the pixels.

    Raises LayoutError naming the file when PIL cannot read it.
    """
    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        raise LayoutError(
            f"{path}: unreadable image ({type(e).__name__}: {e}). The file is corrupt or not an "
            f"image; re-download it or delete it from the dataset."
        ) from e


def load(root: str | os.PathLike, check_images: bool = True) -> tuple[list[tuple[str, int]], list[str]]:
    """Read an identity-per-folder face dataset.

    Returns ``(samples, classes)``: ``samples`` is a list of ``(path, class_index)`` sorted by class
    then file name, ``classes`` the sorted identity folder names (``classes[i]`` is class ``i``).

    Raises LayoutError when ``root`` is missing or has no identity folders, when an identity folder
    has no images ("empty identity"), or (with ``check_images``) when an image cannot be read.
    """
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise LayoutError(
            f"{root}: folder not found. Expected an image-folder face dataset: "
            f"<root>/<identity>/<image>.jpg, one sub-folder per identity."
        )
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise LayoutError(
            f"{root}: no identity folders found. Expected one sub-folder per identity, e.g. "
            f"{root}/person_0001/0001.jpg; point root at the folder that holds the identity folders."
        )
    samples: list[tuple[str, int]] = []
    for label, name in enumerate(classes):
        folder = root / name
        images = list_images(folder)
        if not images:
            raise LayoutError(
                f"{folder}: empty identity (no .jpg/.jpeg/.png files directly inside). Add the "
                f"identity's images or remove the folder."
            )
        for p in images:
            if check_images:
                verify_image(p)
            samples.append((str(p), label))
    return samples, classes
