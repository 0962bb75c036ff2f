"""DPOK's objective per denoising step: clipped policy gradient + closed-form Gaussian KL.

Both terms live on the per-dimension scale of rgsyn.generator.sampler (log-probs averaged over
dimensions), so the KL weight means the same thing at any image size.
"""
from __future__ import annotations

import torch


def gaussian_kl(mean_p: torch.Tensor, mean_q: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(mean_p, std²I) ‖ N(mean_q, std²I)) averaged over dimensions -> (B,).

    Policy and reference share the transition std (it comes from the schedule, not the model),
    so the KL is ‖mean_p − mean_q‖² / (2 std²) per dimension.
    """
    d = (mean_p - mean_q).pow(2).mean(dim=tuple(range(1, mean_p.dim())))
    return d / (2 * std.pow(2))


def policy_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                clip_range: float) -> tuple[torch.Tensor, dict]:
    """PPO-style clipped surrogate (ddpo-pytorch): mean(max(−A·r, −A·clip(r, 1±ε)))."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    loss = torch.maximum(unclipped, clipped).mean()
    stats = {"ratio_mean": ratio.mean().item(), "ratio_max": ratio.max().item(), "ratio_min": ratio.min().item(),
             "clip_frac": ((ratio - 1).abs() > clip_range).float().mean().item()}
    return loss, stats


def dpok_loss(log_prob, old_log_prob, advantages, mean, ref_mean, std, clip_range: float,
              kl_weight: float) -> tuple[torch.Tensor, dict]:
    """Total per-step loss = clipped policy gradient + kl_weight · KL(policy ‖ cold-start policy)."""
    pg, stats = policy_loss(log_prob, old_log_prob, advantages, clip_range)
    kl = gaussian_kl(mean, ref_mean, std).mean()
    stats.update(pg_loss=pg.item(), kl=kl.item())
    return pg + kl_weight * kl, stats
