"""The ablation ladder (paper Fig. 5) on top of the default pipeline's outputs.

Rungs, each over `ablation.seeds` with the downstream trainer of `downstream.train`:

    real_only        real images only (downstream.mix.share 0)
    coldstart_synth  + synthetic data from the cold-start generator (no RL), every candidate trains
    dss_random       the control: selection's composition with a random choice (mode "random")
    dss              + dynamic sample selection (downstream.selection; `fast` where the pipeline ships
                     without it), compared with the control
    sem              generator RL-tuned on R_sem only (ablation.sem_weights); this rung and those above
                     train with the pipeline's own selection mode and compare with the cold-start
                     rung of the same mode (below_rungs)
    cov              ... on R_sem + R_cov (ablation.cov_weights)
    full             ... on R_sem + R_cov + R_exp (rl.weights: the pipeline's own rl + synthesize)
    curriculum       full + the synthetic-heavy-early curriculum (downstream.mix.curriculum)
    novel            real + the privacy stage's novel identities (new classes, after the 1:N leak gate)

Generators and shards the pipeline does not make go under `ablation.work_dir`; everything else
(RL length, synthesis size and gates, trainer) comes from the same params as the pipeline.
"""
from __future__ import annotations

import json
from pathlib import Path

from rgsyn.config import Params, load_params

ROWS = ("real_only", "coldstart_synth", "dss_random", "dss", "sem", "cov", "full", "curriculum", "novel")
SELECTING = ("fast", "exact")  # selection modes that score candidates (off / random do not)


def below_rungs(mode: str) -> dict[str, str]:
    """Rows compared with another than the one above, for the pipeline's `downstream.selection.mode`:
    RL (sem) with the cold-start rung trained with the same selection as RL's rungs (dss when the
    pipeline selects, coldstart_synth when it ships without), new identities with more images. (dss
    meets the control at the same composition, the row above it.)"""
    return {"sem": "dss" if mode in SELECTING else "coldstart_synth", "novel": "full"}


BELOW = below_rungs("fast")
GENERATOR = {"real_only": None, "coldstart_synth": "coldstart", "dss_random": "coldstart", "dss": "coldstart",
             "sem": "sem", "cov": "cov", "full": "full", "curriculum": "full", "novel": "novel"}
NOTES = {"real_only": "real images only", "coldstart_synth": "+ cold-start synthetic, no selection",
         "dss_random": "control: keeps a random half of twice the candidates",
         "dss": "+ dynamic sample selection (vs the control)", "sem": "generator RL on R_sem", "cov": "RL on R_sem + R_cov",
         "full": "RL on R_sem + R_cov + R_exp (full method)", "curriculum": "full + synthetic-heavy-early curriculum",
         "novel": "real + novel identities (new classes, 1:N leak gate)"}


def generator_overrides(p: Params, gen: str) -> dict:
    """Params overrides that make generator `gen`'s shards (and its RL checkpoint for sem / cov)."""
    work = Path(p.ablation.work_dir)
    if gen == "full":
        return {}
    out = {"synth.out_dir": str(work / f"synthetic-{gen}"), "synth.metrics": str(work / f"synth-{gen}.json")}
    if gen == "coldstart":
        return {**out, "synth.checkpoint": p.rl.coldstart}
    weights = {"sem": p.ablation.sem_weights, "cov": p.ablation.cov_weights}[gen]
    return {**out, "rl.out_dir": str(work / f"rl-{gen}"), "rl.weights": list(weights),
            "synth.checkpoint": str(work / f"rl-{gen}")}


def make_generator(params_path: str, gen: str, progress: bool = False) -> str:
    """RL (sem, cov) + synthesis for one rung's generator; returns its shard folder. `full` is the
    pipeline's own data (synth.out_dir, `dvc repro synthesize`) and `novel` the privacy stage's
    (audit.novel_out_dir, `dvc repro privacy`), so nothing runs for them."""
    from rgsyn.rl.loop import run_rl
    from rgsyn.synth.run import synthesize

    p = load_params(params_path)
    made = {"full": (p.synth.out_dir, "synthesize"), "novel": (p.audit.novel_out_dir, "privacy")}
    if gen in made:
        out, stage = made[gen]
        if not Path(out).exists():
            raise FileNotFoundError(f"{out}: the {gen} rung's shards are missing; run `dvc repro {stage}`")
        return out
    q = load_params(params_path, generator_overrides(p, gen))
    if gen != "coldstart":
        run_rl(q, progress=progress, evaluate=False)  # the rung needs the adapter, not the held-out before / after
    out = synthesize(q, progress=progress)
    (Path(p.ablation.work_dir) / f"synth-{gen}.json").write_text(json.dumps(out["metrics"], indent=1))
    return q.synth.out_dir


def row_overrides(row: str, shards: str | None, mode: str = "fast") -> dict:
    """Params overrides of the downstream trainer for one rung; `mode`: the pipeline's selection mode,
    which the RL rungs train with (dss selects with it, or with `fast` when the pipeline does not)."""
    if row == "real_only":
        return {"downstream.mix.share": 0.0, "downstream.mix.curriculum": False}
    if row == "novel":
        return {"downstream.mix.synthetic": "", "downstream.mix.novel": shards}
    o = {"downstream.mix.synthetic": shards}
    if row == "coldstart_synth":
        o["downstream.selection.mode"] = "off"
    if row == "dss_random":
        o["downstream.selection.mode"] = "random"
    if row == "dss" and mode not in SELECTING:
        o["downstream.selection.mode"] = "fast"
    if row == "curriculum":
        o["downstream.mix.curriculum"] = True
    return o


def train_row(params_path: str, row: str, seed: int, shards: str | None, threads: int = 0,
              extra: dict | None = None, synthetic=None) -> dict:
    """One rung, one seed: the downstream trainer with the rung's data and selection (then `extra`,
    params overrides such as another selection mode); `synthetic` (downstream.trainer.Synthetic), when
    given, stands in for the rung's shards (bench/oracle.py's renderer rows). -> metrics"""
    import torch

    from rgsyn.data.layouts import read_index
    from rgsyn.downstream.common import load_synthetic, trainer_for

    if threads:
        torch.set_num_threads(threads)
    mode = load_params(params_path).downstream.selection.mode
    q = load_params(params_path, {**row_overrides(row, shards, mode), **(extra or {})})
    dp = q.downstream
    syn, novel = (synthetic, []) if synthetic is not None else load_synthetic(q)
    ds = read_index(q.data.index)
    _, m = trainer_for(ds, dp.train, "downstream.train")(ds, dp.train, seed, progress=False, synthetic=syn,
                                                          mix=dp.mix, selection=dp.selection, novel_pids=novel,
                                                          compute=q.compute)
    return {"row": row, "seed": seed, **m}
