"""The re-id trainer (paper §5.1): timm backbone, BNNeck, CE + hard-mining triplet, P×K batches, Adam
with weight decay 5e-4, evaluated on query/gallery with the Market-1501 protocol. Real only (the
reference encoder, the real-only baseline) or real + synthetic with dynamic sample selection: the
loop itself is rgsyn.downstream.trainer.fit.
"""
from __future__ import annotations

import torch

from rgsyn.config import MixParams, SelectionParams, TrainParams
from rgsyn.data.images import load_images
from rgsyn.data.records import ReidDataset
from rgsyn.downstream.trainer import LogFn, Synthetic, train_encoder
from rgsyn.encoder import IdentityEncoder, extract_features
from rgsyn.eval import reid as reid_eval


def train_reid(ds: ReidDataset, cfg: TrainParams, seed: int, log: LogFn | None = None,
               progress: bool = True, synthetic: Synthetic | None = None, mix: MixParams | None = None,
               selection: SelectionParams | None = None, novel_pids=(), compute=None) -> tuple[IdentityEncoder, dict]:
    """Train on `ds.train` (+ `synthetic` per `mix`/`selection`; `novel_pids`: synthetic identities that
    become extra classes), evaluate on `ds.query`/`ds.gallery`.

    Returns (model in eval mode, metrics). With synthetic data the metrics also hold the DSS totals
    (`dss_kept`, `dss_candidates`); per-epoch statistics go to `log`.
    """
    return train_encoder(ds, cfg, seed, evaluate_model, log=log, progress=progress, synthetic=synthetic, mix=mix,
                         selection=selection, novel_pids=novel_pids, compute=compute)


def evaluate_model(model: IdentityEncoder, ds: ReidDataset, cfg: TrainParams,
                   device: torch.device | str = "cpu") -> dict:
    """Market-1501 protocol on cosine distances of the L2-normalised BNNeck features."""
    q = extract_features(model, load_images([r.path for r in ds.query], cfg.height, cfg.width),
                         cfg.eval_batch, device)
    g = extract_features(model, load_images([r.path for r in ds.gallery], cfg.height, cfg.width),
                         cfg.eval_batch, device)
    dist = (1 - q @ g.t()).numpy()  # (Q, G)
    r = reid_eval.evaluate(dist, [x.pid for x in ds.query], [x.pid for x in ds.gallery],
                           [x.camid for x in ds.query], [x.camid for x in ds.gallery])
    cmc = r["cmc"]
    return {"mAP": float(r["mAP"]), "mINP": float(r["mINP"]), "rank1": float(cmc[0]),
            "rank5": float(cmc[min(4, len(cmc) - 1)]), "rank10": float(cmc[min(9, len(cmc) - 1)])}

