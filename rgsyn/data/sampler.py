"""P×K identity sampling (Hermans et al. 2017): P identities, K images each, per batch.

Identities with fewer than K images are sampled with replacement (as torchreid's
RandomIdentitySampler does), which is what a long-tailed, scarce train set needs.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np


class PKSampler:
    def __init__(self, labels, p: int, k: int, seed: int):
        if p < 2:
            raise ValueError(f"PK sampler: p={p}; hard-mining triplets need p >= 2 identities per batch")
        self.by_label = defaultdict(list)
        for i, y in enumerate(np.asarray(labels).tolist()):
            self.by_label[y].append(i)
        self.ids = sorted(self.by_label)
        if len(self.ids) < p:
            raise ValueError(f"PK sampler: p={p} but the train set has only {len(self.ids)} identities; lower p")
        self.p, self.k = p, k
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        """Batches per pass over the identities."""
        return max(1, len(self.ids) // self.p)

    def batches(self, n: int):
        """Yield `n` batches of P*K indices; identities are visited in reshuffled passes."""
        order: list = []
        for _ in range(n):
            if len(order) < self.p:  # new pass; leftovers would repeat an identity inside a batch
                order = self.rng.permutation(self.ids).tolist()
            chosen, order = order[: self.p], order[self.p:]
            batch = []
            for y in chosen:
                pool = self.by_label[y]
                batch += self.rng.choice(pool, size=self.k, replace=len(pool) < self.k).tolist()
            yield batch
