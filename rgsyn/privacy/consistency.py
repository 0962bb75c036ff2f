"""The identity-consistency gate: the cleaning of "Hybrid Generative Fusion for Efficient and
Privacy-Preserving Face Recognition Dataset Generation" (Li et al., arXiv:2508.10672), per identity.

A sample conditioned on identity y is consistent when (1) its nearest real identity prototype in the
auditor's space is y's own, and (2) it lies in the largest cluster of y's samples: samples are
linked when their cosine is at least `link` (a low quantile of the real genuine-pair similarities, so
two shots of one real person would usually be linked), and the largest connected component wins
(ties: the component closest to y's prototype). Samples that pass (1) but drift off in a minority
mode fail (2).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def genuine_pair_quantile(feats: torch.Tensor, pids: torch.Tensor, quantile: float) -> float:
    """`quantile` of the cosines over all pairs of real images of the same identity."""
    f = F.normalize(feats.float(), dim=1)
    sim = f @ f.t()
    same = torch.triu(pids[:, None] == pids[None, :], diagonal=1)
    v = sim[same].double().numpy()
    if len(v) == 0:
        raise ValueError("consistency calibration needs an identity with at least 2 real images")
    return float(np.quantile(v, quantile))


def largest_cluster(feats: torch.Tensor, link: float, proto: torch.Tensor | None = None) -> torch.Tensor:
    """(n,) bool: members of the largest connected component of the graph `cos ≥ link` over feats (n, D)."""
    f = F.normalize(feats.float(), dim=1)
    adj = (f @ f.t()) >= link
    comp = torch.arange(len(f))
    for _ in range(len(f)):  # label propagation: each node takes the smallest label among its neighbours
        new = torch.where(adj, comp[None, :], torch.full_like(adj, len(f), dtype=torch.long)).min(1).values
        if torch.equal(new, comp):
            break
        comp = new
    labels, counts = comp.unique(return_counts=True)
    best = labels[counts == counts.max()]
    if len(best) > 1 and proto is not None:  # tie: the component nearest the identity's prototype
        score = torch.stack([(f[comp == c] @ F.normalize(proto.float(), dim=0)).mean() for c in best])
        best = best[score.argmax()][None]
    return comp == best[0]


def consistency_gate(feats: torch.Tensor, classes: torch.Tensor, protos: torch.Tensor, link: float) -> dict:
    """feats (M, D) auditor features of samples conditioned on classes (M,); protos (C, D) real identity
    prototypes -> {"top1": (M,) bool nearest prototype is own, "consistent": (M,) bool top1 and in the
    identity's largest cluster of top-1 samples, "proto_sim": (M,) cosine to own prototype}."""
    f = F.normalize(feats.float(), dim=1)
    sim = f @ F.normalize(protos.float(), dim=1).t()  # (M, C)
    top1 = sim.argmax(1) == classes
    consistent = torch.zeros_like(top1)
    for c in classes.unique().tolist():
        idx = torch.nonzero((classes == c) & top1).flatten()
        if len(idx):
            consistent[idx[largest_cluster(f[idx], link, protos[c])]] = True
    return {"top1": top1, "consistent": consistent, "proto_sim": sim.gather(1, classes[:, None]).squeeze(1)}
