"""Per-identity advantage normalisation (ddpo-pytorch's per-prompt stat tracker, per identity here).

Each identity keeps a window of its recent rewards; a sample's advantage is its reward standardised
by its own identity's statistics, so an identity that is easy to reward does not drown the others.
Until an identity has `min_count` rewards, the whole batch's statistics are used instead.
"""
from __future__ import annotations

from collections import defaultdict, deque

import numpy as np


class PerClassTracker:
    def __init__(self, buffer_size: int, min_count: int):
        self.buffer_size, self.min_count = buffer_size, min_count
        self.buffers: dict[int, deque] = defaultdict(lambda: deque(maxlen=buffer_size))

    def update(self, labels, rewards) -> np.ndarray:
        """Record this batch's rewards and return their advantages (B,)."""
        labels, rewards = np.asarray(labels), np.asarray(rewards, dtype=np.float64)
        batch_mean, batch_std = rewards.mean(), rewards.std() + 1e-6
        adv = np.empty_like(rewards)
        for y in np.unique(labels):
            m = labels == y
            buf = self.buffers[int(y)]
            buf.extend(rewards[m].tolist())
            if len(buf) < self.min_count:
                mean, std = batch_mean, batch_std
            else:
                mean, std = np.mean(buf), np.std(buf) + 1e-6
            adv[m] = (rewards[m] - mean) / std
        return adv

    def stats(self) -> dict:
        return {"tracked_ids": len(self.buffers),
                "mean_buffer": float(np.mean([len(b) for b in self.buffers.values()])) if self.buffers else 0.0}
