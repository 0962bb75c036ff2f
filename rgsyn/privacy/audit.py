"""Everything one audit needs, computed once per run from the real data (`Auditor.build`), and the
per-sample audit of a batch of generated images (`Auditor.audit`): near-copy similarities in pixels and
auditor features (copies.py), identity consistency (consistency.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rgsyn.config import Params
from rgsyn.data.images import load_images
from rgsyn.data.layouts import member_split, read_index
from rgsyn.encoder import IdentityEncoder, extract_features, load_encoder
from rgsyn.identity import prototypes
from rgsyn.privacy import copies
from rgsyn.privacy.consistency import consistency_gate, genuine_pair_quantile


def load_auditor(path: str | Path, device="cpu") -> IdentityEncoder:
    if not (Path(path) / "encoder.json").exists():
        raise FileNotFoundError(f"params.yaml: audit.encoder = {path}: no rgsyn encoder there (encoder.json + "
                                "encoder.safetensors); run `dvc repro auditor` or point it at your own matcher")
    return load_encoder(path, device)


@dataclass
class Auditor:
    encoder: IdentityEncoder
    gen_size: tuple[int, int]  # (H, W) of the generator's images: pixel comparisons happen there
    member_pixels: torch.Tensor  # (2N, P) member images and their mirrors (rows N.. = mirrors)
    member_feats: torch.Tensor  # (N, D) auditor features of the member images
    member_pids: torch.Tensor  # (N,)
    protos: torch.Tensor  # (C, D) auditor prototypes of the generator's classes (all train images)
    pixel_threshold: float
    feature_threshold: float
    link: float  # consistency clusters: samples closer than this are linked
    identity_threshold: float  # novel mode: a new identity closer than this to a real one is a leak
    calibration: dict  # nearest-other-shot similarities (pixel, feature), identity maxima, for the report

    @classmethod
    def build(cls, p: Params, class_pids: list[int], gen_size: tuple[int, int], device="cpu") -> "Auditor":
        a = p.audit
        enc = load_auditor(a.encoder, device)
        members, _ = member_split(p.data)
        imgs = load_images([r.path for r in members], enc.cfg.height, enc.cfg.width)  # (N, 3, H, W)
        feats = extract_features(enc, imgs, device=device)
        gen = load_images([r.path for r in members], *gen_size)  # what the generator trained on
        pix, pix_m = copies.pixel_vectors(gen, *gen_size), copies.pixel_vectors(gen.flip(-1), *gen_size)
        pids = torch.tensor([r.pid for r in members])
        near_pix = copies.nearest_other_shot(pix, pids, alt=pix_m)
        near_feat = copies.nearest_other_shot(feats, pids)
        train = read_index(p.data.index).train
        table = {q: i for i, q in enumerate(class_pids)}
        rows = [r for r in train if r.pid in table]
        all_feats = extract_features(enc, load_images([r.path for r in rows], enc.cfg.height, enc.cfg.width),
                                     device=device)
        all_cls = torch.tensor([table[r.pid] for r in rows])
        link = genuine_pair_quantile(all_feats, all_cls, a.cluster_quantile)
        protos = prototypes(all_feats, all_cls, len(class_pids))
        id_thr, id_max = identity_threshold(protos, a.fpir)
        return cls(enc, gen_size, torch.cat([pix, pix_m]), feats, pids, protos,
                   copies.threshold(near_pix, a.copy_quantile), copies.threshold(near_feat, a.copy_quantile), link,
                   id_thr, {"pixel": near_pix, "feature": near_feat, "identity": id_max})

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return extract_features(self.encoder, images, device=next(self.encoder.parameters()).device)

    def copy_scores(self, images: torch.Tensor, feats: torch.Tensor | None = None) -> dict:
        """uint8 images (M, 3, h, w) -> their nearest member image's similarity in each space, the
        member's pid, and the near-copy flag (M,)."""
        feats = self.features(images) if feats is None else feats
        pix_sim, pix_i = copies.max_similarity(copies.pixel_vectors(images, *self.gen_size), self.member_pixels)
        feat_sim, _ = copies.max_similarity(feats, self.member_feats)
        near = (pix_sim.double() > self.pixel_threshold) | (feat_sim.double() > self.feature_threshold)
        return {"copy_pixel_sim": pix_sim, "copy_feature_sim": feat_sim, "near_copy": near,
                "copy_pid": self.member_pids[pix_i % len(self.member_feats)]}

    def audit(self, images: torch.Tensor, classes: torch.Tensor, extra_protos: torch.Tensor | None = None) -> dict:
        """uint8 samples (M, 3, h, w) conditioned on classes (M,) -> per-sample columns (M,): the copy
        scores and identity consistency. `extra_protos` (K, D): prototypes of classes C.. (novel mode)."""
        feats = self.features(images)
        protos = self.protos if extra_protos is None else torch.cat([self.protos, extra_protos])
        cons = consistency_gate(feats, classes, protos, self.link)
        return {**self.copy_scores(images, feats), **cons, "features": feats}

    def thresholds(self) -> dict:
        return {"pixel": self.pixel_threshold, "feature": self.feature_threshold, "link": self.link,
                "identity": self.identity_threshold}


def identity_threshold(protos: torch.Tensor, fpir: float) -> tuple[float, np.ndarray]:
    """1:N identity-leak threshold: each real identity's highest prototype cosine to every *other* real
    identity; the (1 − fpir) quantile of those maxima is the similarity that an unrelated identity
    exceeds against a gallery of all real identities with probability ≈ fpir. -> (threshold, maxima)."""
    if not 0 < fpir < 1:
        raise ValueError(f"params.yaml: audit.fpir = {fpir} must lie in (0, 1) (default 0.001)")
    f = torch.nn.functional.normalize(protos.float(), dim=1)
    sim = f @ f.t()
    sim.fill_diagonal_(-np.inf)
    maxima = sim.max(1).values.double().numpy()
    return float(np.quantile(maxima, 1 - fpir)), maxima
