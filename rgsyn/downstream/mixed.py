"""The `downstream` stage: the re-id model trained on real + synthetic data (paper §4.3, §5.1).

Same trainer and settings as the real-only reference (`downstream.train` = `reference.train`), plus
the accepted synthetic samples of `downstream.mix.synthetic` in every batch and dynamic sample
selection (`downstream.selection`). metrics/downstream.json holds mean ± std over the seeds and the
real-only numbers of the same seeds when metrics/reference.json has them.
"""
from __future__ import annotations

import json
from pathlib import Path

from rgsyn import tracking
from rgsyn.config import DownstreamParams, Params, params_hash, to_dict
from rgsyn.data.layouts import read_index
from rgsyn.downstream.reid import Synthetic, aggregate, train_reid
from rgsyn.encoder import save_encoder
from rgsyn.synth.reader import read_shards


def load_synthetic(dp: DownstreamParams) -> Synthetic | None:
    """The synthetic candidates (accepted rows only unless told otherwise); None when real only."""
    if not dp.mix.synthetic or (dp.mix.share <= 0 and not dp.mix.curriculum):
        return None
    shards = read_shards(dp.mix.synthetic, accepted_only=dp.mix.accepted_only)
    return Synthetic(shards.images(), shards.labels.tolist())


def train_seed(p: Params, seed: int, save: bool, name: str = "downstream", progress: bool = True,
               synthetic: Synthetic | None = None) -> dict:
    """One seed (a nested MLflow run `<name>-seed<seed>`: losses, DSS kept/dropped and Δl per epoch)."""
    dp = p.downstream
    ds = read_index(p.data.index)
    syn = synthetic if synthetic is not None else load_synthetic(dp)
    with tracking.start_run(p.tracking, f"{name}-seed{seed}", to_dict(dp), nested=True) as run:
        model, metrics = train_reid(ds, dp.train, seed, log=run.log, progress=progress, synthetic=syn,
                                    mix=dp.mix, selection=dp.selection)
        run.log({k: v for k, v in metrics.items()})
        if save:
            save_encoder(model, dp.out_dir, seed=seed, dataset=ds.name, metrics=metrics,
                         params_hash=params_hash(dp), mlflow_run_id=run.id, step=dp.train.epochs)
    return {"seed": seed, **metrics}


def summarize(per_seed: list[dict], real_only: str | Path | None = None) -> dict:
    """mean ± std over seeds; with the reference metrics file, the real-only numbers of the same seeds
    and the gain (the same trainer and seeds, so the difference is the synthetic data)."""
    out = aggregate(per_seed)
    if real_only and Path(real_only).exists():
        ref = {m["seed"]: m for m in json.loads(Path(real_only).read_text())["per_seed"]}
        common = [m for m in per_seed if m["seed"] in ref]
        if common:
            base, ours = aggregate([ref[m["seed"]] for m in common]), aggregate(common)
            out["real_only"] = {k: v for k, v in base.items() if k.endswith(("_mean", "_std")) or k == "n_seeds"}
            out["mAP_gain"] = ours["mAP_mean"] - base["mAP_mean"]
            out["rank1_gain"] = ours["rank1_mean"] - base["rank1_mean"]
    return out


def write_metrics(p: Params, per_seed: list[dict]) -> dict:
    out = summarize(per_seed, p.reference.metrics)
    path = Path(p.downstream.metrics)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return out
