"""The near-copy detector's positive control: real training images sent through the ways a copy could
reach a shard must be flagged, or the detector's silence means nothing.

- resize: the sample's own decode path, to the generator's resolution and back to the dataset's;
- sdedit: partial noising to timestep t and denoising by the adapted generator conditioned on the
  image's own identity (SDEdit, Meng et al. 2022) with the shipping sampler from t on: at t = 100 the
  generator hands back nearly the image, at t = 300 it redraws much of it.
"""
from __future__ import annotations

import torch

from rgsyn.data.images import resize_images
from rgsyn.generator.dit import DiTBundle, to_images, to_model_space
from rgsyn.generator.sampler import Sampler
from rgsyn.generator.viz import to_uint8


def resize_round_trip(images: torch.Tensor, gen_size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> down to gen_size and back up to (H, W), with the loader's filter."""
    return resize_images(resize_images(images, *gen_size), *images.shape[-2:])


@torch.no_grad()
def sdedit(bundle: DiTBundle, sampler: Sampler, images: torch.Tensor, classes: torch.Tensor, t: int, seeds,
           batch: int = 64) -> torch.Tensor:
    """uint8 images (N, 3, h, w) at the generator's resolution -> noised to timestep t (the nearest step
    of the sampler's grid at or below t) and denoised by the sampler from there; uint8 (N, 3, h, w)."""
    device = next(bundle.transformer.parameters()).device
    out = []
    for a in range(0, len(images), batch):
        x0 = to_model_space(bundle, images[a:a + batch].to(device).float() / 127.5 - 1)
        noise = torch.stack([torch.randn(x0.shape[1:], generator=torch.Generator().manual_seed(int(s)))
                             for s in seeds[a:a + batch]]).to(device)
        x = sampler.sample_from(x0, noise, classes[a:a + batch].to(device), t, seeds[a:a + batch])
        out.append(to_uint8(to_images(bundle, x)).cpu())
    return torch.cat(out)
