"""Device choice shared by every stage (`device: cpu | cuda[:i] | auto` in params.yaml)."""
from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' asked for in params.yaml but CUDA is not available; use cpu or auto")
    return torch.device(name)
