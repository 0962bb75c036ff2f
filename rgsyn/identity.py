"""Identity consistency: is a sample read as the identity it was generated for?

A sample conditioned on identity y is consistent when the nearest real identity prototype (the
normalised mean feature of y's real images) is y's own. Chance is 1 / #identities. The encoder that
reads the samples is a choice of the caller: the reference encoder (the reward's), or the audit's
independent one (rgsyn.privacy), which no reward was optimised against.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def prototypes(feats: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """L2-normalised mean feature per class: feats (N, D), labels (N,) -> (C, D)."""
    sums = torch.zeros(num_classes, feats.shape[1], dtype=feats.dtype).index_add_(0, labels, feats)
    return F.normalize(sums, dim=1)


def nearest_prototype(feats: torch.Tensor, protos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of the most similar prototype (M,), the cosine matrix (M, C)) of features (M, D)."""
    sim = F.normalize(feats, dim=1) @ protos.t()
    return sim.argmax(1), sim


def consistency(fake_feats: torch.Tensor, fake_labels: torch.Tensor, protos: torch.Tensor) -> dict:
    """Top-1 consistency of samples vs their conditioning labels, and its per-sample hits (M,) bool."""
    top, sim = nearest_prototype(fake_feats, protos)
    hits = top == fake_labels
    n = protos.shape[0]
    return {"top1": hits.float().mean().item(), "chance": 1.0 / n, "top1_over_chance": hits.float().mean().item() * n,
            "cos_to_own_prototype": sim.gather(1, fake_labels[:, None]).mean().item(), "hits": hits}


class Judge:
    """Reads samples for identity consistency: an encoder + its prototypes of the real identities."""

    def __init__(self, encoder, real_images: torch.Tensor, real_classes: torch.Tensor, num_classes: int, name: str):
        from rgsyn.encoder import extract_features

        self.encoder, self.name, self._extract = encoder, name, extract_features
        self.device = next(encoder.parameters()).device
        self.real_feats = extract_features(encoder, real_images, device=self.device)  # (N, D)
        self.protos = prototypes(self.real_feats, real_classes, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 samples (M, 3, H, W) -> this encoder's L2-normalised features (M, D)."""
        return self._extract(self.encoder, images, device=self.device)

    def __call__(self, images: torch.Tensor, classes: torch.Tensor, feats: torch.Tensor | None = None) -> dict:
        """uint8 samples (M, 3, H, W) of classes (M,) -> consistency() of their features (`feats` when
        the caller has them already)."""
        return consistency(self.features(images) if feats is None else feats, classes, self.protos)


def make_judge(params, reference, real_images: torch.Tensor, real_classes: torch.Tensor, num_classes: int) -> Judge:
    """The audit's independent encoder (`audit.encoder`) when it exists, else the reference encoder."""
    from pathlib import Path

    from rgsyn.encoder import load_encoder

    device = next(reference.parameters()).device
    if params.audit.encoder and (Path(params.audit.encoder) / "encoder.json").exists():
        return Judge(load_encoder(params.audit.encoder, device), real_images, real_classes, num_classes, "audit")
    return Judge(reference, real_images, real_classes, num_classes, "reference")


def audit_features(params, device: str = "cpu") -> Judge:
    """The audit's encoder as a Judge whose features alone are read (the fidelity figures, which bring their
    own reference images): its prototypes are of two blank images."""
    from rgsyn.encoder import load_encoder

    enc = load_encoder(params.audit.encoder, device)
    blank = torch.zeros(2, 3, enc.cfg.height, enc.cfg.width, dtype=torch.uint8)
    return Judge(enc, blank, torch.zeros(2, dtype=torch.long), 1, "audit")
