"""What the downstream stage (run.py), the utility check (utility.py) and the ablation ladder share:
the synthetic candidates the params' mix names, and the trainer of a data set. Below all three, so
none of them imports another to reach these.
"""
from __future__ import annotations

import torch

from rgsyn.config import Params
from rgsyn.data.records import FaceDataset
from rgsyn.downstream.losses import check_task_loss
from rgsyn.downstream.reid import train_reid
from rgsyn.downstream.trainer import Synthetic


def load_synthetic(p: Params) -> tuple[Synthetic | None, list[int]]:
    """The downstream candidates: accepted rows of the augment shards (every row with
    `mix.accepted_only: false`) and of the novel-identity shards, and the novel pids (extra classes).
    (None, []) when real only. Novel shards are read accepted-only whatever `accepted_only` says: their
    `accepted` column carries the 1:N leak gate, and an identity that matched a real person never trains."""
    from rgsyn.synth.reader import read_shards

    mix = p.downstream.mix
    if not (mix.synthetic or mix.novel) or (mix.share <= 0 and not mix.curriculum):
        return None, []
    parts = [read_shards(f, accepted_only=only) for f, only in ((mix.synthetic, mix.accepted_only), (mix.novel, True)) if f]
    novel = sorted(set(parts[-1].labels.tolist())) if mix.novel else []
    pids = [q for s in parts for q in s.labels.tolist()]
    images = torch.cat([s.images() for s in parts if len(s)]) if pids else None
    return (Synthetic(images, pids) if pids else None), novel


def trainer_for(ds, cfg, where: str):
    """train_reid for a re-id dataset, train_face for a face dataset; the loss must match the task."""
    face = isinstance(ds, FaceDataset)
    check_task_loss(cfg, face, where)
    if face:
        from rgsyn.downstream.face import train_face

        return train_face
    return train_reid
