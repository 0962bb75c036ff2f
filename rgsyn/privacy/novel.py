"""Novel identities (`synth.mode: novel`): a release of people who do not exist.

New label vectors are drawn from a Gaussian fitted to the learned label table (mean and covariance of
the real identities' rows, the covariance shrunk towards its average variance because a few hundred
rows cannot pin down a full D×D matrix). A draw is kept only when it is farther from its nearest real
row than the median real row is from its own nearest other row: a draw next to a real row would
condition the generator on (almost) that person. Kept rows are appended to the table before the null
row and sampled like any identity. Whether a new identity is really new is then decided on the images
that would be released (leak_gate, one rule for the gate and the report: leaked_identities at
rgsyn.privacy.audit identity_threshold, 1:N against every real identity).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from rgsyn.generator.dit import DiTBundle, SharedLabelEmbedding, label_tables

NOVEL_BASE = 1_000_000  # pids of novel identities: NOVEL_BASE + k, outside any dataset's range


def novel_pids(n: int) -> list[int]:
    return [NOVEL_BASE + k for k in range(n)]


def novel_release(p):
    """The params of the privacy stage's novel release: synthesis in novel mode, `audit.novel_ids` new
    identities, into `audit.novel_out_dir`."""
    a = p.audit
    return replace(p, synth=replace(p.synth, mode="novel", num_ids=a.novel_ids, out_dir=a.novel_out_dir))


def sample_rows(table: torch.Tensor, n: int, seed: int, shrinkage: float = 0.1,
                novelty_quantile: float | None = 0.5) -> torch.Tensor:
    """n new rows (n, D) ~ N(mean, (1−s)·Σ + s·tr(Σ)/D·I) of the real rows table (C, D); with
    `novelty_quantile` q, only draws whose cosine to the nearest real row is at most the q-quantile of
    the real rows' cosines to their nearest other row."""
    x = table.double()
    mean, xc = x.mean(0), x - x.mean(0)
    cov = xc.t() @ xc / max(1, len(x) - 1)
    cov = (1 - shrinkage) * cov + shrinkage * cov.trace() / cov.shape[0] * torch.eye(cov.shape[0], dtype=x.dtype)
    chol = torch.linalg.cholesky(cov + 1e-9 * torch.eye(cov.shape[0], dtype=x.dtype))
    g = torch.Generator().manual_seed(seed)
    if novelty_quantile is None:
        return (mean + torch.randn(n, x.shape[1], generator=g, dtype=x.dtype) @ chol.t()).to(table.dtype)
    unit = torch.nn.functional.normalize(x, dim=1)
    own = unit @ unit.t()
    own.fill_diagonal_(-2)
    limit = torch.quantile(own.max(1).values, novelty_quantile)
    kept = []
    for _ in range(1000):
        z = mean + torch.randn(4 * n, x.shape[1], generator=g, dtype=x.dtype) @ chol.t()
        near = (torch.nn.functional.normalize(z, dim=1) @ unit.t()).max(1).values
        kept.append(z[near <= limit])
        if sum(len(k) for k in kept) >= n:
            return torch.cat(kept)[:n].to(table.dtype)
    raise RuntimeError("novel identities: too few draws lie far enough from the real rows; lower the novelty quantile")


def add_novel_identities(bundle: DiTBundle, n: int, seed: int) -> int:
    """Append n sampled rows to the bundle's label table (before the null row). -> index of the first."""
    old = label_tables(bundle.transformer)[0]
    w = old.embedding_table.weight.detach()  # (C + 1, D): the last row is the null label
    real = w[:old.num_classes]
    table = SharedLabelEmbedding(old.num_classes + n, w.shape[1], dropout_prob=0.1)  # 0.1 only sizes the null row
    with torch.no_grad():
        table.embedding_table.weight.copy_(torch.cat([real, sample_rows(real, n, seed), w[old.num_classes:]]))
    table.to(w.device).requires_grad_(False)
    for blk in bundle.transformer.transformer_blocks:
        blk.norm1.emb.class_embedder = table
    return old.num_classes


def identity_sims(feats: torch.Tensor, labels, real_protos: torch.Tensor) -> dict[int, float]:
    """How close each identity of a release comes to a real one, 1:N: features (M, D) of its images,
    their labels (M,), the real identities' prototypes (C, D) -> {identity: highest cosine of its
    prototype (the normalised mean of its images' features) to a real prototype}."""
    labels = torch.as_tensor(labels)
    real = torch.nn.functional.normalize(real_protos.float(), dim=1)
    return {k: _best(feats[labels == k].float(), real) for k in sorted(set(labels.tolist()))}


def _best(f: torch.Tensor, real: torch.Tensor) -> float:
    return float((torch.nn.functional.normalize(f.mean(0), dim=0) @ real.t()).max())


def leaking(sims: dict[int, float], threshold: float) -> list[int]:
    """The identities whose similarity (identity_sims) exceeds the FPIR threshold, sorted."""
    return [k for k, v in sims.items() if v > threshold]


def leaked_identities(feats: torch.Tensor, labels, real_protos: torch.Tensor, threshold: float) -> dict:
    """The one rule of whether an identity of a release leaks, for the gate and the report alike:
    features (M, D) of its images, their labels (M,), the real identities' prototypes (C, D), the FPIR
    threshold. -> {"all": identities whose prototype over all their images exceeds the threshold
    (identity_sims), "split_half": those where the prototype of either half of their images (even / odd
    positions) does: a second draw of the same person, another measure that the gate does not apply}."""
    labels = torch.as_tensor(labels)
    real = torch.nn.functional.normalize(real_protos.float(), dim=1)
    out = {"all": leaking(identity_sims(feats, labels, real_protos), threshold),
           "split_half": []}
    for k in sorted(set(labels.tolist())):
        f = feats[labels == k].float()
        if any(_best(h, real) > threshold for h in (f[0::2], f[1::2]) if len(h)):
            out["split_half"].append(k)
    return out


def leak_gate(feats: torch.Tensor, labels, candidate: np.ndarray, real_protos: torch.Tensor,
              threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The 1:N gate of a novel release, on the images it would release: the candidates (M,) bool, the
    rows that every other gate accepts. An identity leaks when those images do (leaked_identities), and
    then none of its rows is released, so what is released passes that rule by construction. -> (the
    identity's similarity over its candidates per row (M,) float32, NaN where it has none; released
    (M,) bool)."""
    labels = torch.as_tensor(labels)
    cand = torch.from_numpy(np.asarray(candidate, bool))
    sims = identity_sims(feats[cand], labels[cand], real_protos)
    leaked = leaking(sims, threshold)  # leaked_identities' "all", from the similarities just computed
    rows = labels.tolist()
    sim = np.asarray([sims.get(k, np.nan) for k in rows], np.float32)
    return sim, np.asarray(candidate, bool) & ~np.isin(rows, leaked)
