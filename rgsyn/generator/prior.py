"""The `prior` stage (embedded default only): our stand-in for an ImageNet-pretrained DiT-XL/2.

The general-domain set is procedural pedestrians too, but broader than and disjoint from the target:
other identity seeds (a separate random stream, so no target identity can recur), many more cameras
and scenes, more occlusion. Each general identity is a class of its own (as ImageNet's classes), so the
prior's label pathway learns to turn an embedding vector into an appearance — which is exactly what
cold start then exploits: it only has to find a vector per new identity.
"""
from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
import torch
from tqdm.auto import tqdm

from rgsyn.config import Params, PriorParams, params_hash, to_dict
from rgsyn.data.images import resize_images
from rgsyn.data.procedural.render import make_camera, make_identity, render_image
from rgsyn.devices import resolve_device
from rgsyn.generator.dit import DiTBundle, build_dit, make_scheduler, save_dit, tie_block_embeddings
from rgsyn.generator.sampler import Sampler, per_sample_seeds
from rgsyn.generator.train import train_denoiser, trainable
from rgsyn.generator.viz import labelled_grid

_STREAM = 2  # general-domain seeds are [seed, 2, ...]; the target uses [seed, pid] and [seed, 7, cam]


def render_general(num_classes: int, per_class: int, num_cameras: int, height: int, width: int,
                   seed: int, occlusion_prob: float = 0.3, noise_std: float = 0.03,
                   progress: bool = True, first: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (images uint8 (N, 3, H, W), labels (N,)) with N = num_classes * per_class: captures `first` ..
    `first + per_class - 1` of each class (a larger `first` draws new images of the same identities)."""
    cams = [make_camera(np.random.default_rng([seed, _STREAM, 0, c])) for c in range(num_cameras)]
    imgs, labels = [], []
    for c in tqdm(range(num_classes), desc="general-domain set", disable=not progress):
        ident = make_identity(np.random.default_rng([seed, _STREAM, 1, c]))
        for k in range(first, first + per_class):
            r = np.random.default_rng([seed, _STREAM, 2, c, k])
            cam = cams[int(r.integers(num_cameras))]
            imgs.append(render_image(ident, cam, r, height, width, occlusion_prob, noise_std))
            labels.append(c)
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
    return x, torch.tensor(labels, dtype=torch.long)


def build_prior(p: PriorParams) -> DiTBundle:
    """A fresh pixel-space DiT for the packed (3, H, W) images, with 1000-style class labels."""
    if p.height % p.pack or p.height // p.pack != p.width:
        raise ValueError(f"params.yaml: prior.pack={p.pack} must turn prior.height x prior.width = "
                         f"{p.height}x{p.width} into a square (height / pack == width); DiT is square-only")
    model = tie_block_embeddings(build_dit("small", p.width, 3 * p.pack, p.num_classes, **asdict(p.model)))
    return DiTBundle(model, make_scheduler(p.prediction_type, p.beta_schedule), None, p.pack)


def sample_rows(bundle: DiTBundle, labels: list[int], per_row: int, steps: int, seed: int,
                guidance: float = 1.0) -> list[torch.Tensor]:
    """One row of uint8 samples per label (DDIM, eta 0)."""
    y = torch.tensor(labels).repeat_interleave(per_row)
    seeds = per_sample_seeds(seed, len(y))
    return list(Sampler(bundle, steps, eta=0.0, guidance=guidance).images(y, seeds).split(per_row))


def general_domain(params: Params, num_classes: int, per_class: int, seed: int,
                   progress: bool = True, first: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The general-domain identities of the task at the dataset's own image size -> (uint8 (N, 3, H, W),
    labels (N,)): procedural pedestrians (re-id) or faces (rgsyn.data.procedural.faces), streams disjoint from the
    target's. The prior and the auditor both train on them; `first` > per_class draws captures none of
    them saw (the prior's truth, rgsyn.eval.fidelity.prior_reference)."""
    from rgsyn.data.stage import is_face

    if is_face(params.data.layout):
        from rgsyn.data.procedural.faces import render_general_faces

        return render_general_faces(num_classes, per_class, params.data.face.size, seed, first=first)
    e = params.data.embedded
    return render_general(num_classes, per_class, params.prior.num_cameras, e.height, e.width, seed,
                          progress=progress, first=first)


def run_prior(params: Params, log=None, progress: bool = True) -> dict:
    """Render the general-domain set, train (resumably), export in diffusers layout, draw a grid."""
    p = params.prior
    bundle = build_prior(p)  # checks the size first: rendering takes a while
    images, labels = general_domain(params, p.num_classes, p.per_class, p.seed, progress)
    # Rendered at the target's size and resized the way the cold start loads target files, so the prior
    # sees exactly the image statistics the cold start will show it.
    images = resize_images(images, p.height, p.width)
    torch.manual_seed(p.seed)
    t0 = time.time()
    ema = train_denoiser(bundle, images, labels, steps=p.steps, batch=p.batch, lr=p.lr,
                         weight_decay=p.weight_decay, warmup=p.warmup, ema_decay=p.ema_decay,
                         label_dropout=p.label_dropout, seed=p.seed, flip=True, ckpt_dir=p.ckpt_dir,
                         ckpt_every=p.ckpt_every, config=to_dict(p), log=log, progress=progress,
                         device=resolve_device(p.device), precision=params.compute.precision)
    ema.copy_to(trainable(bundle.transformer).values())
    bundle.transformer.cpu()
    save_dit(bundle, p.out_dir, trained_steps=ema.optimization_step, params_hash=params_hash(p),
             image_size=[p.height, p.width], train_seconds_this_run=time.time() - t0)
    shown = list(range(min(8, p.num_classes)))
    rows = sample_rows(bundle, shown, 8, p.sample_steps, seed=1)
    real = [images[labels == c][:8] for c in shown]
    grid = labelled_grid([[r, s] for r, s in zip(real, rows)], p.grid, [("real", 8), ("generated", 8)],
                         row_labels=[f"class {c}" for c in shown], title=f"prior: {p.sample_steps} DDIM steps")
    return {"out_dir": p.out_dir, "grid": str(grid), "trained_steps": ema.optimization_step}
