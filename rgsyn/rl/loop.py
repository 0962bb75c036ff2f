"""The `rl` stage: fine-tune the cold-start generator on the multi-objective reward (paper §4.2) with
`rl.algorithm`: `draft` (the pathwise reward gradient, rgsyn.rl.draft) or `dpok` (the paper's
score-function method, rgsyn.rl.dpok). One short loop for both.

Each step draws `rl.ids_per_step` identities (uniformly or by CGPO) and `rl.group_size` samples of
each, a group starting from one shared x_T, with the shipping sampler (params `sampler`), and takes
one update of the chosen algorithm. Every `rl.val_every` steps R_sem is read on held-out noise by the
validation encoder (the reference stage's second seed, never the reward's encoder nor the judge);
the best validated policy is kept and restored at the end, and `rl.patience` validations without a
gain stop the run early (0: never).

Held-out evaluation before and after (rgsyn.rl.core): fixed identities and noise, per-identity
values with standard errors paired over identities; a before/after grid and the training and
validation rewards go to MLflow.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from rgsyn import distributed as dist
from rgsyn.config import Params, RLParams
from rgsyn.devices import configure, resolve_device
from rgsyn.generator.sampler import Sampler, per_sample_seeds
from rgsyn.generator.viz import labelled_grid
from rgsyn.rl.cgpo import ClassSampler
from rgsyn.eval.fidelity import generator_fidelity
from rgsyn.rl.core import (RewardSetup, before_after_grid, compare, draw_rollout, evaluate_policy, group_starts,
                           load_reward_setup, own_similarity, save_rl)
from rgsyn.rl.dpok import dpok_step
from rgsyn.rl.draft import draft_step
from rgsyn.rl.policy import Policy


@torch.no_grad()
def validation_reward(sampler: Sampler, setup: RewardSetup, rp: RLParams) -> float:
    """Mean R_sem read by the validation encoder on `rl.val_per_id` held-out samples of every identity
    (noise from `rl.val_seed`, apart from the evaluation's and the rollouts')."""
    classes = torch.arange(len(setup.bank)).repeat_interleave(rp.val_per_id)
    images = sampler.images(classes, per_sample_seeds(rp.val_seed, len(classes)), rp.eval_batch)
    return float(own_similarity(setup.validator, setup.validator.features(images), classes).mean())


def check(params: Params, setup: RewardSetup) -> None:
    rp = params.rl
    if rp.group_size < 4:
        raise ValueError(f"params.yaml: rl.group_size = {rp.group_size}; group-relative advantages and R_exp's "
                         "leave-one-out credit need at least 4 samples per identity")
    if rp.val_every and setup.validator is None:
        raise FileNotFoundError(f"{params.reference.val_out_dir}: no validation encoder for rl.val_every = "
                                f"{rp.val_every}; give params.yaml's reference.train.seeds a second seed (its model "
                                "is saved there) and rerun the reference stage, or set rl.val_every: 0")


def run_rl(params: Params, log: Callable[[dict, int], None] | None = None,
           artifact: Callable[[str], None] | None = None, progress: bool = True, evaluate: bool = True) -> dict:
    """RL of the cold-start generator -> the saved adapter (`rl.out_dir`) and the run's numbers.

    evaluate: draw the held-out samples (`rl.eval_per_id` per identity) before and after and compare
    them. They touch no state the update uses (fixed per-sample seeds), so a caller that needs only
    the adapter (the ablation's RL rungs) skips them with the same result, and the numbers then hold
    no before / after comparison.
    """
    rp, ref_train = params.rl, params.reference.train
    configure(params.compute)
    launched = dist.init_from_env()
    device = launched or resolve_device(rp.device)
    setup = load_reward_setup(params, device)
    check(params, setup)
    bundle, pids = setup.bundle, setup.pids
    if params.compute.grad_checkpointing:  # DiT-XL/2: recompute block activations in the backward
        bundle.transformer.enable_gradient_checkpointing()
    policy = Policy(bundle.transformer, rp.lora_rank, rp.full_finetune, rp.seed, rp.lora_targets)
    policy.model.to(device)
    opt = torch.optim.AdamW(policy.param_groups(rp.lr, rp.table_lr), weight_decay=0.0)
    sampler = Sampler.from_params(bundle, params.sampler, params.compute.precision)
    picker = ClassSampler(len(pids), rp.curriculum_floor, rp.curriculum_smoothing, rp.curriculum_bonus, rp.seed)
    rng, g = np.random.default_rng(rp.seed), torch.Generator().manual_seed(rp.seed)
    main = dist.is_main()
    before = evaluate_policy(sampler, setup, rp, rp.eval_batch) if main and evaluate else None
    t0, kls, val = time.time(), [], []
    best = (-np.inf, 0, None)  # (validation reward, step, the policy's tensors)

    def validate(step: int) -> bool:
        """Validation at `step` (updates taken); True when the run should stop."""
        nonlocal best
        v = validation_reward(sampler, setup, rp)
        val.append((step, v))
        if log and main:
            log({"val/r_sem": v}, step)
        if v > best[0]:
            best = (v, step, {k: t.detach().clone() for k, t in policy.params.items()})
        return bool(rp.patience) and (step - best[1]) >= rp.patience * rp.val_every

    stopped = rp.val_every and validate(0)
    done = 0
    for step in tqdm(range(rp.steps), desc=f"rl ({rp.algorithm})", disable=not progress or not main):
        if stopped:
            break
        ids, seeds = draw_rollout(rng, len(pids), rp, picker)
        mine = dist.local_rows(len(ids))  # every process draws the same global batch and rolls out its share
        rows = slice(mine.start * rp.group_size, mine.stop * rp.group_size)
        labels = torch.as_tensor(ids[mine]).repeat_interleave(rp.group_size).to(device)
        seeds = seeds[rows]
        start = group_starts(seeds, rp.group_size)
        if rp.algorithm == "dpok":
            st, parts, images = dpok_step(policy, sampler, setup, rp, opt, g, labels, seeds, start, rows, step == 0)
        else:
            st, parts, images = draft_step(policy, sampler, setup, rp, opt, labels, seeds, start, ref_train.flip,
                                           ref_train.pad, params.compute.grad_checkpointing)
        if rp.curriculum:
            picker.update(torch.as_tensor(ids).repeat_interleave(rp.group_size).numpy(), parts["combined"].numpy())
        kls.append(st["kl"])
        done = step + 1
        if log and main:
            log({**{f"reward/{k}": float(v.mean()) for k, v in parts.items()}, **{f"update/{k}": v for k, v in st.items()},
                 "update/lr": rp.lr, "update/seconds": time.time() - t0}, step)
        if artifact and main and rp.grid_every and done % rp.grid_every == 0:
            shown = ids[mine][:8]  # this process's identities
            rows_img = [[images[labels.cpu() == y]] for y in shown]
            artifact(str(labelled_grid(rows_img, Path(rp.out_dir) / f"samples_step{done:04d}.png",
                                       [("generated", rp.group_size)], row_labels=[f"id {pids[y]}" for y in shown],
                                       title=f"RL step {done}: one group per identity")))
        if rp.val_every and (done % rp.val_every == 0 or done == rp.steps):  # the last policy too
            stopped = validate(done)
    if rp.val_every and best[2] is not None:  # the best validated policy is the result
        with torch.no_grad():
            for k, t in policy.params.items():
                t.copy_(best[2][k])
    if not main:
        return {}
    train_s = time.time() - t0
    kept = best[1] if rp.val_every else done
    save_rl(policy, rp.out_dir, rp, pids, kept, done)
    compared = {}
    if evaluate:
        after = evaluate_policy(sampler, setup, rp, rp.eval_batch)
        compared = compare(before, after)
        compared["fidelity"] = generator_fidelity(setup.judge, params, pids, {k: (d["images"], d["classes"]) for k, d in
                                                                           (("before", before), ("after", after))})
        if artifact:
            artifact(str(before_after_grid(before, after, pids, Path(rp.out_dir) / "before_after.png")))
    out = {**compared, "judge": setup.judge.name, "algorithm": rp.algorithm,
           "settings": settings(rp), "steps_taken": done, "kept_step": kept,
           "validation": [{"step": s, "r_sem": v} for s, v in val],
           "kl_last": kls[-1] if kls else 0.0, "kl_max": max(kls) if kls else 0.0, "train_seconds": train_s,
           "eval": {"per_id": rp.eval_per_id, "identities": len(pids),
                    "samples": len(pids) * rp.eval_per_id if evaluate else 0},
           "processes": dist.world()[1]}
    return out


def settings(rp: RLParams) -> dict:
    """The keys of `rl` that shape the chosen algorithm's update (recorded beside its result)."""
    shared = ["steps", "ids_per_step", "group_size", "lr", "table_lr", "max_grad_norm", "lora_rank", "lora_targets",
              "weights", "val_every", "patience"]
    own = {"dpok": ["inner_epochs", "minibatches", "kl_weight", "clip_range", "min_sigma"],
           "draft": ["draft_k", "draft_uncond_grad", "anchor_weight"]}[rp.algorithm]
    return {k: getattr(rp, k) for k in shared + own}


if __name__ == "__main__":
    # torchrun --nproc_per_node=N -m rgsyn.rl.loop params.yaml; one process: python -m rgsyn.rl.loop params.yaml
    # --set rl.steps=40 rl.out_dir=/tmp/rl rl.metrics=/tmp/rl/rl.json (an RL run beside the pipeline's own)
    import argparse

    from rgsyn.config import load_params, parse_overrides

    ap = argparse.ArgumentParser(prog="python -m rgsyn.rl.loop")
    ap.add_argument("params", nargs="?", default="params.yaml")
    ap.add_argument("--set", nargs="*", default=[], help="key=value overrides of the params file")
    ap.add_argument("--print-log", action="store_true", help="print what the stage logs to MLflow, one JSON a step")
    a = ap.parse_args()
    p = load_params(a.params, parse_overrides(a.set))
    out = run_rl(p, log=(lambda m, s: print(json.dumps({"step": s, **m}), flush=True)) if a.print_log else None)
    if dist.is_main():
        Path(p.rl.metrics).parent.mkdir(parents=True, exist_ok=True)
        Path(p.rl.metrics).write_text(json.dumps(out, indent=1))
