"""Group-relative advantages (GRPO-style; ddpo-pytorch's per-prompt statistics, per identity here).

Every RL step draws `group_size` samples of each chosen identity. A sample's advantage is its reward
standardised within its own identity's group of that step:

    A_i = (r_i − mean_{j ∈ G(y_i)} r_j) / (std_{j ∈ G(y_i)} r_j + eps)      (population std)

so the advantage says which of the identity's own samples the reward prefers, never which identity
is easier to reward: identities are never standardised against each other. The rewards themselves
(eq. 11) are standardised over the whole step (eq. 10), so history from earlier steps is on another
scale; pooling it is therefore not offered.
"""
from __future__ import annotations

import numpy as np


def group_advantages(labels, rewards, eps: float = 1e-6, min_group: int = 2) -> np.ndarray:
    """(B,) identity labels + (B,) rewards -> (B,) advantages standardised within each identity's group.

    A group of one sample has no spread to compare against: refused (raise rl.group_size).
    """
    labels, rewards = np.asarray(labels), np.asarray(rewards, dtype=np.float64)
    adv = np.empty_like(rewards)
    for y in np.unique(labels):
        m = labels == y
        if m.sum() < min_group:
            raise ValueError(f"identity {y} has {int(m.sum())} sample(s) in this step; group-relative advantages "
                             f"need at least {min_group} per identity (params.yaml: rl.group_size)")
        r = rewards[m]
        adv[m] = (r - r.mean()) / (r.std() + eps)
    return adv
