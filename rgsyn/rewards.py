"""The multi-objective reward of paper §4.2 (eq. 2–11), as pure functions on reference-encoder features.

Shapes: generated features (B, D) of one identity y, that identity's memory-bank features (N, D).
The bank holds L2-normalised reference-encoder embeddings of real train images (rgsyn.memory_bank); R_cov and
R_exp normalise their inputs themselves (eq. 4–9 are stated on normalised features, and normalising
a normalised vector changes nothing), R_sem averages the bank as given (eq. 2).

Group rewards (R_cov, R_exp) score a set of samples. RL needs a reward per sample, so each sample
also gets its own credit:
- R_cov: its row of the kernel means — mean_r k(g_j, r) − α · mean_{j'≠j} k(g_j, g_j'). The mean of
  these credits over the group equals the group value exactly.
- R_exp: its leave-one-out contribution R_exp(G) − R_exp(G ∖ {g_j}): positive when including the
  sample moves the spread towards the target (1+ε)·S_r. Needs |G| ≥ 3.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_WEIGHTS = (1.0, 0.75, 0.25)  # λ_sem, λ_cov, λ_exp (paper §5.1)


def prototype(bank_feats: torch.Tensor) -> torch.Tensor:
    """Eq. 2: f̂_y = mean(f_i) / ‖mean(f_i)‖ -> (D,)."""
    return F.normalize(bank_feats.mean(0), dim=0)


def semantic_reward(gen_feats: torch.Tensor, bank_feats: torch.Tensor) -> torch.Tensor:
    """Eq. 3: R_sem = (f̂_gᵀ f̂_y + 1) / 2 per generated sample -> (B,) in [0, 1]."""
    return (F.normalize(gen_feats, dim=1) @ prototype(bank_feats) + 1) / 2


def rbf(u: torch.Tensor, v: torch.Tensor, sigma: float) -> torch.Tensor:
    """Eq. 4: k_σ(u, v) = exp(−‖u − v‖² / 2σ²) for all pairs -> (len(u), len(v))."""
    d2 = (u[:, None, :] - v[None, :, :]).pow(2).sum(-1)
    return torch.exp(-d2 / (2 * sigma ** 2))


def _check_group(gen_feats: torch.Tensor, need: int, what: str):
    if gen_feats.shape[0] < need:
        raise ValueError(f"{what} needs at least {need} generated samples of the identity, got {gen_feats.shape[0]}"
                         " (raise the RL group size per identity)")


def _coverage_terms(gen_feats, bank_feats, sigma):
    g, r = F.normalize(gen_feats, dim=1), F.normalize(bank_feats, dim=1)
    k_gr = rbf(g, r, sigma).mean(1)  # (B,) alignment of each sample with the bank
    k_gg = rbf(g, g, sigma)
    b = g.shape[0]
    off = (k_gg.sum(1) - k_gg.diagonal()) / (b - 1)  # (B,) mean kernel to the other samples
    return k_gr, off


def coverage_reward(gen_feats: torch.Tensor, bank_feats: torch.Tensor, sigma: float, alpha: float) -> torch.Tensor:
    """Eq. 5: E_{g,r} k(g, r) − α · E_{g≠g'} k(g, g') over the group -> scalar."""
    _check_group(gen_feats, 2, "coverage_reward")
    k_gr, off = _coverage_terms(gen_feats, bank_feats, sigma)
    return k_gr.mean() - alpha * off.mean()


def coverage_reward_per_sample(gen_feats, bank_feats, sigma: float, alpha: float) -> torch.Tensor:
    """Per-sample credit of eq. 5 (each sample's row); its mean is coverage_reward -> (B,)."""
    _check_group(gen_feats, 2, "coverage_reward")
    k_gr, off = _coverage_terms(gen_feats, bank_feats, sigma)
    return k_gr - alpha * off


def spread(feats: torch.Tensor) -> torch.Tensor:
    """Eq. 6–8: S = tr(Σ), Σ the ddof=1 covariance of the L2-normalised features -> scalar."""
    f = F.normalize(feats, dim=1)
    return (f - f.mean(0)).pow(2).sum() / (f.shape[0] - 1)


def expansion_reward(gen_feats: torch.Tensor, bank_feats: torch.Tensor, eps: float, tau: float,
                     s_ref: float | None = None) -> torch.Tensor:
    """Eq. 9: R_exp = −((S_g − (1 + ε) S_r) / τ)² -> scalar.

    `s_ref` overrides S_r: an identity with a single real image has no spread of its own (ddof=1), so
    callers pass a pooled estimate (the mean S_r of the identities that have one).
    """
    _check_group(gen_feats, 2, "expansion_reward")
    if s_ref is None:
        if bank_feats.shape[0] < 2:
            raise ValueError("expansion_reward needs at least 2 bank features of the identity (its spread S_r),"
                             " or a pooled s_ref")
        s_ref = spread(bank_feats)
    return -((spread(gen_feats) - (1 + eps) * s_ref) / tau) ** 2


def expansion_reward_per_sample(gen_feats, bank_feats, eps: float, tau: float,
                                s_ref: float | None = None) -> torch.Tensor:
    """Leave-one-out credit R_exp(G) − R_exp(G ∖ {j}) -> (B,)."""
    _check_group(gen_feats, 3, "expansion_reward_per_sample")
    full = expansion_reward(gen_feats, bank_feats, eps, tau, s_ref)
    b = gen_feats.shape[0]
    keep = ~torch.eye(b, dtype=torch.bool, device=gen_feats.device)
    loo = torch.stack([expansion_reward(gen_feats[keep[j]], bank_feats, eps, tau, s_ref) for j in range(b)])
    return full - loo


def standardize(r: torch.Tensor, eps: float = 1e-8, stats: tuple | None = None) -> torch.Tensor:
    """Eq. 10: (R − mean) / (std + ε) over the batch, population std; `stats` = (mean, std) given as
    constants instead (pathwise RL: the same value, the gradient of a fixed affine map)."""
    mean, std = stats if stats is not None else (r.mean(), r.std(correction=0))
    return (r - mean) / (std + eps)


def batch_stats(parts: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Eq. 10's (mean, population std) of each reward component over a batch, as constants for autograd."""
    return {k: (v.detach().mean(), v.detach().std(correction=0)) for k, v in parts.items()}


def combine_rewards(r_sem: torch.Tensor, r_cov: torch.Tensor, r_exp: torch.Tensor,
                    weights=DEFAULT_WEIGHTS, stats: dict | None = None) -> torch.Tensor:
    """Eq. 11: tanh(λ_sem R̃_sem + λ_cov R̃_cov + λ_exp R̃_exp) -> (B,) in (−1, 1).

    `stats` (batch_stats of the whole batch; pathwise RL): eq. 10's statistics as constants. Were they
    differentiated, each standardised term would average to 0 over the batch whatever the samples,
    and the gradient of the batch's mean reward would carry nothing but tanh's curvature."""
    l_sem, l_cov, l_exp = weights
    z = {k: standardize(r, stats=(stats or {}).get(k)) for k, r in (("r_sem", r_sem), ("r_cov", r_cov), ("r_exp", r_exp))}
    return torch.tanh(l_sem * z["r_sem"] + l_cov * z["r_cov"] + l_exp * z["r_exp"])


def pooled_spread(bank: list[torch.Tensor]) -> float:
    """Mean S_r over the identities with ≥ 2 bank features: S_r of an identity with one real image."""
    spreads = [float(spread(b)) for b in bank if len(b) >= 2]
    return sum(spreads) / len(spreads) if spreads else 0.0


def score_groups(feats: torch.Tensor, classes: torch.Tensor, bank: list[torch.Tensor], sigma: float, alpha: float,
                 eps: float, tau: float, s_pool: float) -> dict[str, torch.Tensor]:
    """Per-sample R_sem and the per-sample credits of R_cov and R_exp, each identity's samples scored as
    one group against its own bank. feats (M, D), classes (M,) index into `bank` -> {name: (M,) float64}
    on the features' device, differentiable in the features."""
    f, classes = feats.double(), classes.to(feats.device)
    out = {k: torch.zeros(len(classes), dtype=torch.float64, device=f.device) for k in ("r_sem", "r_cov", "r_exp")}
    for c in classes.unique().tolist():
        m = classes == c
        b = bank[c].to(f.device, torch.float64)
        s_ref = None if len(b) >= 2 else s_pool
        out["r_sem"][m] = semantic_reward(f[m], b)
        out["r_cov"][m] = coverage_reward_per_sample(f[m], b, sigma, alpha)
        out["r_exp"][m] = expansion_reward_per_sample(f[m], b, eps, tau, s_ref)
    return out


def group_values(feats: torch.Tensor, classes: torch.Tensor, bank: list[torch.Tensor], sigma: float,
                 alpha: float, eps: float, tau: float, s_pool: float) -> dict[str, torch.Tensor]:
    """Per identity present (sorted class order): the mean R_sem of its samples and the group rewards of
    eq. 5 and eq. 9 themselves -> {"classes", "r_sem", "r_cov", "r_exp"}, each (C,). eq. 9 is never positive."""
    f, classes = feats.double(), classes.cpu()
    ids = classes.unique()
    sem, cov, exp = [], [], []
    for c in ids.tolist():
        g, b = f[classes == c], bank[c].double()
        sem.append(semantic_reward(g, b).mean())
        cov.append(coverage_reward(g, b, sigma, alpha))
        exp.append(expansion_reward(g, b, eps, tau, None if len(b) >= 2 else s_pool))
    return {"classes": ids, "r_sem": torch.stack(sem), "r_cov": torch.stack(cov), "r_exp": torch.stack(exp)}
