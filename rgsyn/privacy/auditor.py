"""The `auditor` stage (embedded default; frozen and committed like the prior): the audit's matcher.

An identity encoder trained only on the prior's general-domain identities (rgsyn.generator.prior's
render_general: the same seeds, none of them a target identity), with the re-id trainer. It stands in
for a public matcher: it never saw the target's images or identities and no reward was optimised
against it. Its mAP on the target's test split says how good a matcher it is. A user with a matcher
of their own points `audit.encoder` at it instead (an rgsyn encoder folder: encoder.json +
encoder.safetensors).
"""
from __future__ import annotations

import numpy as np
import torch

from rgsyn.config import Params, params_hash
from rgsyn.data.layouts import read_index
from rgsyn.devices import resolve_device
from rgsyn.downstream.losses import reid_loss
from rgsyn.downstream.reid import evaluate_model
from rgsyn.downstream.trainer import fit
from rgsyn.encoder import EncoderConfig, IdentityEncoder, save_encoder
from rgsyn.generator.prior import render_general


def run_auditor(p: Params, log=None, progress: bool = True) -> dict:
    a, e = p.auditor, p.data.embedded
    cfg = a.train
    images, labels = render_general(a.num_classes, a.per_class, p.prior.num_cameras, e.height, e.width,
                                    a.seed, progress=progress)  # (N, 3, H, W) uint8, the prior's identities
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seeds[0])
    model = IdentityEncoder(EncoderConfig(cfg.backbone, a.num_classes, cfg.embed_dim, cfg.height, cfg.width),
                            cfg.pretrained_path).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    out = fit(model, opt, images, labels.numpy().astype(np.int64), cfg, cfg.seeds[0],
              lambda f, lg, y: reid_loss(f, lg, y, cfg.margin, cfg.label_smoothing), device=device, log=log,
              progress=progress)
    target = evaluate_model(model, read_index(p.data.index), cfg, device)  # a matcher that never saw them
    save_encoder(model.eval(), a.out_dir, seed=cfg.seeds[0], dataset="general-domain", params_hash=params_hash(a),
                 target_test=target, train_seconds=out["train_seconds"])
    return {"target_test": target, **out}
