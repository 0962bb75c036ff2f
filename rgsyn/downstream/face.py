"""The face trainer (paper §5.1: ResNet + CosFace, SGD momentum 0.9, weight decay 5e-4), on the same
loop as re-id (rgsyn.downstream.trainer.fit: P×K batches, real + synthetic, dynamic sample selection
with the per-sample CosFace loss as l_id), evaluated with insightface's 10-fold verification protocol
on every pair set and, per demographic group, the bias summary (FRCSyn's TO = mean − std).

Embeddings for verification are insightface's: the L2-normalised sum of the features of the image and
of its mirror.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rgsyn.config import MixParams, SelectionParams, TrainParams
from rgsyn.data.records import FaceDataset
from rgsyn.data.verification import decode_images, read_bin
from rgsyn.downstream.trainer import LogFn, Synthetic, train_encoder
from rgsyn.encoder import IdentityEncoder, extract_features
from rgsyn.eval import bias, verification


def train_face(ds: FaceDataset, cfg: TrainParams, seed: int, log: LogFn | None = None, progress: bool = True,
               synthetic: Synthetic | None = None, mix: MixParams | None = None,
               selection: SelectionParams | None = None, novel_pids=(), compute=None) -> tuple[IdentityEncoder, dict]:
    """Train on `ds.train` (+ synthetic candidates), evaluate on `ds.sets` and `ds.groups`."""
    return train_encoder(ds, cfg, seed, evaluate_face, log=log, progress=progress, synthetic=synthetic, mix=mix,
                         selection=selection, novel_pids=novel_pids, compute=compute)


def pair_embeddings(model: IdentityEncoder, path: str, cfg: TrainParams, device) -> tuple[torch.Tensor, np.ndarray]:
    """A .bin's images through the model: (embeddings (2N, D), issame (N,))."""
    bins, issame = read_bin(path)
    imgs = decode_images(bins, (cfg.height, cfg.width)).mul(255).round().to(torch.uint8)  # (2N, 3, H, W)
    f = extract_features(model, imgs, cfg.eval_batch, device) + extract_features(model, imgs.flip(-1),
                                                                                 cfg.eval_batch, device)
    return F.normalize(f, dim=1), np.asarray(issame, bool)


def evaluate_face(model: IdentityEncoder, ds: FaceDataset, cfg: TrainParams, device="cpu") -> dict:
    """Accuracy on each pair set, their mean (`avg_acc`), and the group summary (`group_<name>`,
    `group_mean`, `group_std`, `to`)."""
    out = {}
    for name, path in ds.sets.items():
        r = verification.evaluate(*pair_embeddings(model, path, cfg, device))
        out[name], out[f"{name}_std"] = float(r["accuracy"]), float(r["accuracy_std"])
    out["avg_acc"] = float(np.mean([out[n] for n in ds.sets])) if ds.sets else float("nan")
    if ds.groups:
        g = bias.evaluate_groups({n: pair_embeddings(model, p, cfg, device) for n, p in ds.groups.items()})
        out.update({f"group_{n}": v for n, v in g["per_group"].items()}, group_mean=g["mean"], group_std=g["std"],
                   to=g["TO"])
    return out
