"""An identity encoder trained on general-domain identities only: the body of two frozen stages.

- `auditor` (rgsyn.privacy.auditor): the audit's matcher, independent of every model it judges.
- `backbone`: the general-domain pretraining the reference, utility and downstream trainers may start
  from (`<stage>.train.pretrained_path: models/backbone`), as the paper's start from ImageNet weights.

Both render the prior's general domain (rgsyn.generator.prior.general_domain: procedural identities
from a stream no target identity is drawn from) with their own section's `seed`, which picks the
identities, their renders and the training seed's stream alike: the backbone (seed 1) and the auditor
(seed 0) see disjoint identity sets and end in other weights, so the audit's matcher is never a model
it audits nor the start of one. Each trains with the re-id or face trainer of the target (`fit`),
reports its mAP / verification accuracy on the target's test split, which it never saw, and is saved
as an rgsyn encoder folder (encoder.json + encoder.safetensors).
"""
from __future__ import annotations

import numpy as np
import torch

from rgsyn.config import GeneralEncoderParams, Params, params_hash
from rgsyn.data.layouts import read_index
from rgsyn.data.records import FaceDataset
from rgsyn.devices import resolve_device
from rgsyn.downstream.face import evaluate_face
from rgsyn.downstream.losses import check_task_loss, loss_head, trainer_losses
from rgsyn.downstream.reid import evaluate_model
from rgsyn.downstream.trainer import fit, make_optimizer
from rgsyn.encoder import EncoderConfig, IdentityEncoder, save_encoder
from rgsyn.generator.prior import general_domain


def train_general_encoder(p: Params, section: GeneralEncoderParams, name: str, log=None,
                          progress: bool = True) -> dict:
    """Train `section`'s encoder on `section.num_classes` x `section.per_class` general-domain renders
    of seed `section.seed`, evaluate it on the target's test split, save it to `section.out_dir`.
    `name`: the params section (`auditor`, `backbone`), for messages and the saved metadata.
    -> {"target_test": metrics, "out_dir", **fit's result}"""
    cfg = section.train
    images, labels = general_domain(p, section.num_classes, section.per_class, section.seed, progress)
    ds = read_index(p.data.index)
    face = isinstance(ds, FaceDataset)
    device = resolve_device(cfg.device)
    check_task_loss(cfg, face, f"{name}.train")
    torch.manual_seed(cfg.seeds[0])
    model = IdentityEncoder(EncoderConfig(cfg.backbone, section.num_classes, cfg.embed_dim, cfg.height, cfg.width,
                                          head=loss_head(cfg.loss)), cfg.pretrained_path).to(device)
    loss, _ = trainer_losses(cfg)
    out = fit(model, make_optimizer(model, cfg), images, labels.numpy().astype(np.int64), cfg, cfg.seeds[0], loss,
              device=device, log=log, progress=progress, compute=p.compute)
    # how good a matcher it is, on the target's test data it never saw
    target = (evaluate_face if face else evaluate_model)(model, ds, cfg, device)
    save_encoder(model.eval(), section.out_dir, seed=cfg.seeds[0], dataset="general-domain", stage=name,
                 general_seed=section.seed, params_hash=params_hash(section), target_test=target,
                 train_seconds=out["train_seconds"])
    return {"target_test": target, "out_dir": section.out_dir, **out}
