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
from rgsyn.data.records import FaceDataset
from rgsyn.devices import resolve_device
from rgsyn.downstream.face import evaluate_face
from rgsyn.downstream.losses import check_task_loss, loss_head, trainer_losses
from rgsyn.downstream.reid import evaluate_model
from rgsyn.downstream.trainer import fit, make_optimizer
from rgsyn.encoder import EncoderConfig, IdentityEncoder, save_encoder
from rgsyn.generator.prior import general_domain


def run_auditor(p: Params, log=None, progress: bool = True) -> dict:
    a = p.auditor
    cfg = a.train
    images, labels = general_domain(p, a.num_classes, a.per_class, a.seed, progress)  # the prior's identities
    ds = read_index(p.data.index)
    face = isinstance(ds, FaceDataset)
    device = resolve_device(cfg.device)
    check_task_loss(cfg, face, "auditor.train")
    torch.manual_seed(cfg.seeds[0])
    model = IdentityEncoder(EncoderConfig(cfg.backbone, a.num_classes, cfg.embed_dim, cfg.height, cfg.width,
                                          head=loss_head(cfg.loss)), cfg.pretrained_path).to(device)
    loss, _ = trainer_losses(cfg)
    out = fit(model, make_optimizer(model, cfg), images, labels.numpy().astype(np.int64), cfg, cfg.seeds[0], loss,
              device=device, log=log, progress=progress, compute=p.compute)
    # how good a matcher it is, on the target's test data it never saw
    target = (evaluate_face if face else evaluate_model)(model, ds, cfg, device)
    save_encoder(model.eval(), a.out_dir, seed=cfg.seeds[0], dataset="general-domain", params_hash=params_hash(a),
                 target_test=target, train_seconds=out["train_seconds"])
    return {"target_test": target, **out}
