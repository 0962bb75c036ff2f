"""Class curriculum (CGPO: "Curriculum Group Policy Optimization: Adaptive Sampling for Unleashing the
Potential of Text-to-Image Generation", Li et al., arXiv:2605.17807): sample identities where the policy
still has something to learn.

An identity whose group rewards vary a lot is one where the policy's samples differ in quality, so
a gradient step there is informative; one with uniform rewards (all good or all bad) teaches little.
Probability ∝ max(floor, smoothed variance) + bonus for identities not yet seen.
"""
from __future__ import annotations

import numpy as np


class ClassSampler:
    def __init__(self, num_classes: int, floor: float, smoothing: float, explore_bonus: float, seed: int):
        self.var = np.zeros(num_classes)
        self.seen = np.zeros(num_classes, dtype=bool)
        self.floor, self.smoothing, self.bonus = floor, smoothing, explore_bonus
        self.rng = np.random.default_rng(seed)

    def probs(self) -> np.ndarray:
        w = np.maximum(self.var, self.floor) + self.bonus * ~self.seen
        return w / w.sum()

    def sample(self, n: int) -> np.ndarray:
        """n distinct identities (fewer if there are fewer classes)."""
        n = min(n, len(self.var))
        return self.rng.choice(len(self.var), size=n, replace=False, p=self.probs())

    def update(self, labels, rewards) -> None:
        """Fold each identity's group-reward variance into its smoothed estimate."""
        labels, rewards = np.asarray(labels), np.asarray(rewards, dtype=np.float64)
        for y in np.unique(labels):
            v = rewards[labels == y].var()
            self.var[y] = v if not self.seen[y] else self.smoothing * self.var[y] + (1 - self.smoothing) * v
            self.seen[y] = True
