"""Membership inference: can anyone tell the generator's training images (members) from held-out
images of the same people (`data.holdout_per_id`, never shown to the generator)?

Two attacks, each a score per real image (higher = "member"):
- loss (Carlini et al. 2023; Matsumoto et al. 2023): the generator's denoising error on the image at
  fixed noise, conditioned on its own identity, averaged over a few timesteps; score = −error. Needs
  the generator's weights.
- shard: the image's highest auditor similarity to the synthetic samples of its identity; needs only
  the released shards.
Reported as ROC-AUC with a bootstrap interval and TPR at 1 % FPR (the figure the MIA literature
reports); AUC 0.5 is chance.
"""
from __future__ import annotations

import numpy as np
import torch

from rgsyn import stats
from rgsyn.generator.dit import DiTBundle, to_model_space
from rgsyn.generator.sampler import split_prediction
from rgsyn.generator.train import diffusion_target
from rgsyn.privacy.copies import max_similarity


@torch.no_grad()
def denoising_error(bundle: DiTBundle, images: torch.Tensor, classes: torch.Tensor, timesteps, seeds,
                    batch: int = 64) -> np.ndarray:
    """Per-image mean squared denoising error (N,) over `timesteps`, noise from each image's seed.
    images: uint8 (N, 3, H, W) at the generator's resolution; classes (N,) generator class indices."""
    device = next(bundle.transformer.parameters()).device
    sched, out = bundle.scheduler, []
    for a in range(0, len(images), batch):
        x0 = to_model_space(bundle, images[a:a + batch].to(device).float() / 127.5 - 1)
        y = classes[a:a + batch].to(device)
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds[a:a + batch]]
        errs = []
        for t in timesteps:
            noise = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in gens]).to(device)
            tb = torch.full((len(x0),), int(t), device=device, dtype=torch.long)
            pred = split_prediction(bundle.transformer(sched.add_noise(x0, noise, tb), timestep=tb,
                                                       class_labels=y).sample, bundle.channels)
            errs.append((pred - diffusion_target(sched, x0, noise, tb)).pow(2).flatten(1).mean(1))
        out.append(torch.stack(errs).mean(0).cpu())
    return torch.cat(out).double().numpy()


def shard_scores(real_feats: torch.Tensor, real_pids, syn_feats: torch.Tensor, syn_pids) -> np.ndarray:
    """Each real image's highest cosine (N,) to the synthetic samples of its own identity (−1 if none)."""
    real_pids, syn_pids = np.asarray(real_pids), np.asarray(syn_pids)
    out = np.full(len(real_pids), -1.0)
    for pid in np.unique(real_pids):
        s = syn_pids == pid
        if s.any():
            r = real_pids == pid
            out[r] = max_similarity(real_feats[torch.from_numpy(r)], syn_feats[torch.from_numpy(s)])[0].double().numpy()
    return out


def attack_summary(members: np.ndarray, nonmembers: np.ndarray, seed: int = 0) -> dict:
    """ROC-AUC (members positive), its bootstrap 95 % interval, TPR at 1 % FPR."""
    lo, hi = stats.auc_interval(members, nonmembers, seed=seed)
    return {"auc": stats.roc_auc(members, nonmembers), "auc_ci": [lo, hi],
            "tpr_at_fpr_0.01": stats.tpr_at_fpr(members, nonmembers, 0.01)}
