"""The `reference` and `downstream` stages: the same trainer, seed by seed, on real data only
(`reference`: its first seed's model is the reference encoder of every later stage) or on real +
synthetic data (`downstream`, paper §4.3). One nested MLflow run per seed; the metrics file holds
mean ± std over seeds and, for `downstream`, the real-only numbers of the same seeds and the gain.
"""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from rgsyn import distributed as dist
from rgsyn import tracking
from rgsyn.config import Params, params_hash, to_dict
from rgsyn.data.layouts import read_index
from rgsyn.downstream.common import load_synthetic, trainer_for
from rgsyn.downstream.trainer import Synthetic, aggregate
from rgsyn.downstream.utility import read_verdict
from rgsyn.devices import configure
from rgsyn.encoder import save_encoder

STAGES = ("reference", "downstream")


def save_dirs(p: Params, stage: str) -> list[str | None]:
    """Where each seed's model of `stage` is saved (None: not saved): the first seed's to the stage's
    out_dir; for `reference` the second seed's to reference.val_out_dir (RL's validation encoder)."""
    seeds = getattr(p, stage).train.seeds
    dirs = [getattr(p, stage).out_dir] + ([p.reference.val_out_dir] if stage == "reference" else [])
    return [dirs[i] if i < len(dirs) else None for i in range(len(seeds))]


def train_seed(p: Params, stage: str, seed: int, save: bool | str, progress: bool = True,
               synthetic: Synthetic | None = None, novel_pids=()) -> dict:
    """One seed of `stage` (reference | downstream) as a nested MLflow run `<stage>-seed<seed>`;
    saves the model to `save` when it is a folder, to the stage's out_dir when it is True."""
    if stage not in STAGES:
        raise ValueError(f"train_seed: stage {stage!r} is not one of {STAGES}")
    sec = getattr(p, stage)
    configure(p.compute)
    ds = read_index(p.data.index)
    kw = {"compute": p.compute}
    if stage == "downstream" and shipped(p) == "real_only":
        kw.update(mix=None)  # the utility check says the synthetic data hurts here: real only is shipped
    elif stage == "downstream":
        if synthetic is None:
            synthetic, novel_pids = load_synthetic(p)
        kw.update(synthetic=synthetic, mix=sec.mix, selection=sec.selection, novel_pids=novel_pids)
    main = dist.is_main()  # under torchrun only the first process logs and saves
    with (tracking.start_run(p.tracking, f"{stage}-seed{seed}", to_dict(sec), nested=True) if main
          else contextlib.nullcontext()) as run:
        model, metrics = trainer_for(ds, sec.train, f"{stage}.train")(ds, sec.train, seed, log=run.log if main else None,
                                                                       progress=progress and main, **kw)
        if main:
            run.log({f"test/{k}": v for k, v in metrics.items()})
        if save and main:
            save_encoder(model, sec.out_dir if save is True else save, seed=seed, dataset=ds.name, metrics=metrics,
                         params_hash=params_hash(sec), mlflow_run_id=run.id, step=sec.train.epochs)
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
            for k in ("mAP", "rank1", "avg_acc", "to"):
                if f"{k}_mean" in ours and f"{k}_mean" in base:
                    out[f"{k}_gain"] = ours[f"{k}_mean"] - base[f"{k}_mean"]
    return out


def shipped(p: Params) -> str:
    """What the downstream stage trains and ships: `real_only` when `downstream.require_gain` and the
    utility check's verdict is `hurts`, else `real+synthetic`."""
    hurts = p.downstream.require_gain and read_verdict(p.utility.metrics) == "hurts"
    return "real_only" if hurts else "real+synthetic"


def write_metrics(p: Params, stage: str, per_seed: list[dict]) -> dict:
    """The stage's metrics file (DVC metrics): reference = mean ± std; downstream = + real-only comparison
    and what it shipped (the utility check's verdict)."""
    out = summarize(per_seed, p.reference.metrics if stage == "downstream" else None)
    if stage == "downstream":
        out.update(shipped=shipped(p), utility_verdict=read_verdict(p.utility.metrics))
    path = Path(getattr(p, stage).metrics)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":  # torchrun --nproc_per_node=N -m rgsyn.downstream.run reference|downstream params.yaml
    stage, path = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "params.yaml")
    from rgsyn.config import load_params

    params = load_params(path)
    dist.init_from_env()
    per_seed = [train_seed(params, stage, s, save=d or False)
                for s, d in zip(getattr(params, stage).train.seeds, save_dirs(params, stage))]
    if dist.is_main():
        write_metrics(params, stage, per_seed)
