"""What every RL algorithm shares: the reward setup, the held-out evaluation, the checkpoint.

Three encoders read the samples, each for its own purpose:
- the reference encoder (`reference.out_dir`): the reward's features (eq. 2–11), what RL optimises;
- the validation encoder (`reference.val_out_dir`, the reference stage's second seed): the same data
  and recipe, another initialisation, never optimised against — early stopping reads R_sem through it,
  so the policy cannot win by exploiting one network's quirks;
- the judge (`audit.encoder`, the audit's independent matcher): identity consistency, diversity and
  fidelity of the held-out evaluation, never seen by training or early stopping.

The held-out evaluation draws `rl.eval_per_id` samples of every identity with fixed noise, the same
before and after RL, and reports per identity: R_sem (reference and validation encoder), eq. 5's and
eq. 9's group values, top-1 identity consistency (judge), within-identity diversity (mean pairwise
distance of the judge's features among an identity's samples: a collapse onto one image shows), and
the Fréchet distance of the judge's features of all samples to those of the real member images. Every
change comes with a standard error paired over identities.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from rgsyn import rewards as R
from rgsyn import stats
from rgsyn.config import Params, RLParams, to_dict
from rgsyn.encoder import IdentityEncoder, extract_features, load_encoder
from rgsyn.eval.fidelity import paired_frechet
from rgsyn.generator.adapters import load_adapter_state
from rgsyn.generator.coldstart import load_coldstart
from rgsyn.generator.dit import DiTBundle
from rgsyn.generator.sampler import Sampler, per_sample_seeds
from rgsyn.generator.viz import labelled_grid
from rgsyn.identity import Judge, make_judge
from rgsyn.memory_bank import by_class, ensure_memory_bank, load_memory_bank
from rgsyn.provenance import git_sha
from rgsyn.rl.policy import LORA_TARGETS, Policy

METRICS = ("r_sem", "r_sem_val", "r_cov", "r_exp", "top1", "diversity")


class RewardSetup(NamedTuple):
    bundle: DiTBundle           # the cold-start generator
    pids: list[int]             # its label table's identities
    encoder: IdentityEncoder    # the reward's reference encoder
    bank: list[torch.Tensor]    # per identity: (n_c, D) float64 memory-bank features
    s_pool: float               # pooled spread of the bank (eq. 9's scale)
    judge: Judge                # identity consistency (the audit's encoder where there is one)
    validator: Judge | None     # R_sem for early stopping (the reference stage's second seed), if trained


def load_reward_setup(params: Params, device: str | torch.device = "cpu") -> RewardSetup:
    """What RL scores with, loaded from the default run's outputs (also the RL benches' starting point)."""
    from rgsyn.data.images import load_images
    from rgsyn.data.layouts import member_split

    rp = params.rl
    bundle, pids = load_coldstart(rp.coldstart)
    bundle.to(device).transformer.eval()
    encoder = load_encoder(params.reference.out_dir, device).requires_grad_(False)
    ensure_memory_bank(rp.bank, params.data, encoder)
    feats, bank_pids = load_memory_bank(rp.bank)
    bank = [b.double() for b in by_class(feats, bank_pids, pids)]
    members, _ = member_split(params.data)
    table = {p: i for i, p in enumerate(pids)}
    real = load_images([r.path for r in members], encoder.cfg.height, encoder.cfg.width)
    classes = torch.tensor([table[r.pid] for r in members])
    judge = make_judge(params, encoder, real, classes, len(pids))
    val_dir = Path(params.reference.val_out_dir)
    validator = (Judge(load_encoder(val_dir, device).requires_grad_(False), real, classes, len(pids), "validation")
                 if (val_dir / "encoder.json").exists() else None)
    return RewardSetup(bundle, pids, encoder, bank, R.pooled_spread(bank), judge, validator)


def reward_parts(images: torch.Tensor, classes: torch.Tensor, setup: RewardSetup, rp: RLParams) -> dict:
    """uint8 images (B, 3, H, W) of generator classes (B,) -> per-sample reward components (B,)."""
    feats = extract_features(setup.encoder, images, device=next(setup.encoder.parameters()).device)
    return R.score_groups(feats, classes, setup.bank, rp.sigma, rp.alpha, rp.eps, rp.tau, setup.s_pool)


def group_starts(seeds: list[int], group_size: int) -> list[int]:
    """x_T seeds: every member of a group starts from the x_T stream of the group's first seed."""
    return [seeds[i - i % group_size] for i in range(len(seeds))]


def draw_rollout(rng: np.random.Generator, n_ids: int, rp: RLParams, picker=None) -> tuple[np.ndarray, list[int]]:
    """The global step's identities (rl.ids_per_step, uniform or by CGPO) and per-sample seeds."""
    ids = picker.sample(rp.ids_per_step) if rp.curriculum else rng.choice(n_ids, rp.ids_per_step, replace=False)
    return ids, rng.integers(0, 2 ** 62, len(ids) * rp.group_size).tolist()


def own_similarity(judge: Judge, feats: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """R_sem (eq. 3) read by another encoder: (cos(f, its prototype of the own identity) + 1) / 2 -> (M,)."""
    return ((feats.double() * judge.protos.double()[classes]).sum(1) + 1) / 2


def per_identity(values: torch.Tensor, n: int, per_id: int) -> np.ndarray:
    """(n · per_id,) values in class-major order -> the mean of each identity's (n,)."""
    return values.double().view(n, per_id).mean(1).numpy()


def diversity(feats: torch.Tensor, n: int, per_id: int) -> np.ndarray:
    """Mean pairwise Euclidean distance among each identity's samples (n · per_id, D) -> (n,)."""
    f = feats.double().view(n, per_id, -1)
    d = torch.cdist(f, f)  # (n, k, k)
    return (d.sum((1, 2)) / (per_id * (per_id - 1))).numpy()


@torch.no_grad()
def evaluate_policy(sampler: Sampler, setup: RewardSetup, rp: RLParams, batch: int = 128) -> dict:
    """Held-out samples (`rl.eval_per_id` per identity, fixed seeds) -> per-identity values (C,) of each
    metric in METRICS (r_sem_val only with a validation encoder), the judge's features and the images."""
    n, k = len(setup.bank), rp.eval_per_id
    classes = torch.arange(n).repeat_interleave(k)
    images = sampler.images(classes, per_sample_seeds(rp.eval_seed, len(classes)), batch)
    feats = extract_features(setup.encoder, images, device=next(setup.encoder.parameters()).device)
    groups = R.group_values(feats, classes, setup.bank, rp.sigma, rp.alpha, rp.eps, rp.tau, setup.s_pool)
    audit = setup.judge.features(images)
    out = {key: groups[key].numpy() for key in ("r_sem", "r_cov", "r_exp")}
    out["top1"] = per_identity(setup.judge(images, classes, audit)["hits"], n, k)
    out["diversity"] = diversity(audit, n, k)
    if setup.validator is not None:
        out["r_sem_val"] = per_identity(own_similarity(setup.validator, setup.validator.features(images), classes), n, k)
    return {**out, "audit_feats": audit, "real_feats": setup.judge.real_feats, "classes": classes, "images": images}


def compare(before: dict, after: dict) -> dict:
    """Means before/after over identities, the paired change and bootstrap s.e. (identities resampled);
    the Fréchet distance to the real member images (judge's features) with paired s.e. of its change;
    diversity after as a share of before."""
    out = {"before": {}, "after": {}, "se": {}, "se_before": {}, "se_after": {}, "change": {}}
    for k in METRICS:
        if k not in before:
            continue
        d = stats.paired_difference(before[k], after[k])
        out["before"][k], out["after"][k] = float(before[k].mean()), float(after[k].mean())
        out["se"][k], out["change"][k] = d["se"], d["mean"]
        out["se_before"][k], out["se_after"][k] = stats.bootstrap_se(before[k]), stats.bootstrap_se(after[k])
    out["frechet"] = paired_frechet(before["real_feats"], before["audit_feats"], after["audit_feats"],
                                    before["classes"])
    out["diversity_ratio"] = out["after"]["diversity"] / out["before"]["diversity"]
    return out


def before_after_grid(before: dict, after: dict, pids: list[int], path: str | Path, rows: int = 8,
                      per_row: int = 4) -> Path:
    """Per identity (rows), the same held-out noise drawn by the cold start and by the RL policy."""
    shown = range(min(rows, len(pids)))
    cls = before["classes"]
    grid = [[before["images"][cls == y][:per_row], after["images"][cls == y][:per_row]] for y in shown]
    return labelled_grid(grid, path, [("cold start", per_row), ("after RL", per_row)],
                         row_labels=[f"id {pids[y]}" for y in shown], title="held-out noise, before and after RL")


def save_rl(policy: Policy, out_dir: str | Path, rp: RLParams, pids: list[int], step: int,
            steps_taken: int | None = None) -> Path:
    """The policy's tensors + rl.json: `step` = the update the tensors are from (the best validated one),
    `steps_taken` = the updates run."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(policy.state(), str(out / "adapter.safetensors"))
    (out / "rl.json").write_text(json.dumps({"coldstart": rp.coldstart, "lora_rank": rp.lora_rank,
                                             "lora_targets": rp.lora_targets, "full_finetune": rp.full_finetune,
                                             "algorithm": rp.algorithm, "pids": pids, "step": step,
                                             "steps_taken": step if steps_taken is None else steps_taken,
                                             "config": to_dict(rp), "git_sha": git_sha()}, indent=1))
    return out


def load_rl(path: str | Path, merge: bool = True) -> tuple[DiTBundle, list[int]]:
    """The fine-tuned generator: the cold-start model with an RL run's tensors (LoRA merged when `merge`)."""
    meta = json.loads((Path(path) / "rl.json").read_text())
    bundle, pids = load_coldstart(meta["coldstart"])
    state = load_file(str(Path(path) / "adapter.safetensors"))
    bundle.transformer = load_adapter_state(bundle.transformer, state, meta["lora_rank"], meta["full_finetune"],
                                            merge, meta.get("lora_targets", LORA_TARGETS)).eval()
    bundle.transformer.requires_grad_(False)
    return bundle, pids
