"""The `rl` stage: DPOK on the multi-objective reward, one short loop.

Each iteration: pick identities (uniformly or by CGPO), roll out `group_size` samples per identity
with the stochastic sampler recording x_t and per-step log-probs, score the final images with the
reward (rgsyn.rewards on reference-encoder features), turn rewards into per-identity advantages,
then one update pass over every stochastic step: clipped policy gradient + KL to the cold-start
policy, gradients accumulated over steps, clipped, one optimizer step.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from rgsyn import rewards as R
from rgsyn.config import Params, RLParams, to_dict
from rgsyn.devices import resolve_device
from rgsyn.encoder import IdentityEncoder, extract_features, git_sha, load_encoder
from rgsyn.generator.coldstart import load_coldstart
from rgsyn.generator.dit import DiTBundle, to_images
from rgsyn.generator.sampler import Sampler, Trajectory
from rgsyn.generator.viz import save_grid, to_uint8
from rgsyn.memory_bank import ensure_memory_bank, by_class, load_memory_bank
from rgsyn.rl.advantages import PerClassTracker
from rgsyn.rl.cgpo import ClassSampler
from rgsyn.rl.loss import dpok_loss
from rgsyn.rl.policy import Policy

COMPONENTS = ("r_sem", "r_cov", "r_exp")


class RewardModel:
    """Images + conditioning labels -> the three reward components per sample (SPEC §6)."""

    def __init__(self, encoder: IdentityEncoder, bank: list[torch.Tensor], rp: RLParams):
        self.encoder, self.bank, self.rp = encoder, bank, rp
        spreads = [float(R.spread(b)) for b in bank if len(b) >= 2]
        self.s_pool = float(np.mean(spreads)) if spreads else 0.0  # S_r for single-image identities

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        f = extract_features(self.encoder, images, device=next(self.encoder.parameters()).device).double()
        out = {k: torch.zeros(len(labels), dtype=torch.float64) for k in COMPONENTS}
        rp = self.rp
        for y in labels.unique().tolist():
            m = labels.cpu() == y
            bank = self.bank[y].double()
            s_ref = None if len(bank) >= 2 else self.s_pool
            out["r_sem"][m] = R.semantic_reward(f[m], bank)
            out["r_cov"][m] = R.coverage_reward_per_sample(f[m], bank, rp.sigma, rp.alpha)
            out["r_exp"][m] = R.expansion_reward_per_sample(f[m], bank, rp.eps, rp.tau, s_ref)
        return out


def combined(scores: dict, weights) -> torch.Tensor:
    return R.combine_rewards(scores["r_sem"], scores["r_cov"], scores["r_exp"], tuple(weights))


def rl_update(policy: Policy, sampler: Sampler, traj: Trajectory, labels: torch.Tensor, adv: torch.Tensor,
              rp: RLParams, opt: torch.optim.Optimizer, check_ratio: bool) -> dict:
    """One pass over the stochastic steps of a batch of trajectories; one optimizer step."""
    n = traj.log_probs.shape[0]
    sums: dict[str, float] = {}
    for j in range(n):
        t, xt, prev = sampler.timesteps[j].to(traj.latents.device), traj.latents[j], traj.latents[j + 1]
        new = sampler.step(xt, t, labels, prev=prev)
        with policy.reference() as ref_model:
            ref = sampler.step(xt, t, labels, prev=prev, model=ref_model)
        if check_ratio and j == 0:
            gap = (new.log_prob - traj.log_probs[j]).abs().max().item()
            if gap > 1e-4:
                raise RuntimeError(f"importance ratio is not 1 before the first update (|Δ log p| = {gap:.2e}):"
                                   " rollout and update disagree (dropout, train-mode layers or dtype)")
        loss, stats = dpok_loss(new.log_prob, traj.log_probs[j], adv, new.mean, ref.mean, new.std,
                                rp.clip_range, rp.kl_weight)
        (loss / n).backward()
        for k, v in stats.items():
            sums[k] = sums.get(k, 0.0) + v / n
    sums["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(policy.params.values(), rp.max_grad_norm))
    opt.step()
    opt.zero_grad(set_to_none=True)
    return sums


@torch.no_grad()
def evaluate_policy(bundle: DiTBundle, sampler: Sampler, reward: RewardModel, num_classes: int,
                    per_id: int, seed: int, batch: int = 128) -> dict[str, torch.Tensor]:
    """Raw reward components of `per_id` samples for every identity, from fixed held-out noise."""
    labels = torch.arange(num_classes).repeat_interleave(per_id)
    imgs = sampler.images(labels, seed, batch - batch % per_id)
    return {**reward(imgs, labels), "labels": labels, "images": imgs}


def compare(before: dict, after: dict, weights) -> dict:
    """Means before/after; the combined reward is standardised over both sets together (eq. 10 is
    batch-relative, so standardising each set alone would make both means ~0)."""
    joint = combined({k: torch.cat([before[k], after[k]]) for k in COMPONENTS}, weights)
    n = len(before["r_sem"])
    out = {}
    for name, d, c in (("before", before, joint[:n]), ("after", after, joint[n:])):
        out[name] = {**{k: float(d[k].mean()) for k in COMPONENTS}, "reward": float(c.mean())}
    return out


def save_rl(policy: Policy, out_dir: str | Path, rp: RLParams, pids: list[int], step: int) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(policy.adapter_state(), str(out / "adapter.safetensors"))
    (out / "rl.json").write_text(json.dumps({"coldstart": rp.coldstart, "lora_rank": rp.lora_rank,
                                             "full_finetune": rp.full_finetune, "pids": pids, "step": step,
                                             "config": to_dict(rp), "git_sha": git_sha()}, indent=1))
    return out


def load_rl(path: str | Path) -> tuple[DiTBundle, list[int]]:
    """The fine-tuned generator: cold-start model + adapters (or trained tensors) of an RL run."""
    meta = json.loads((Path(path) / "rl.json").read_text())
    bundle, pids = load_coldstart(meta["coldstart"])
    policy = Policy(bundle.transformer, meta["lora_rank"], meta["full_finetune"], seed=0)
    state = load_file(str(Path(path) / "adapter.safetensors"))
    with torch.no_grad():
        for k, v in policy.params.items():
            v.copy_(state[k])
    bundle.transformer.requires_grad_(False)
    return bundle, pids


def run_rl(params: Params, log: Callable[[dict, int], None] | None = None,
           artifact: Callable[[str], None] | None = None, progress: bool = True) -> dict:
    rp = params.rl
    device = resolve_device(rp.device)
    bundle, pids = load_coldstart(rp.coldstart)
    bundle.transformer.to(device).eval()
    encoder = load_encoder(params.reference.out_dir, device)
    ensure_memory_bank(rp.bank, params.data.index, encoder)
    feats, bank_pids = load_memory_bank(rp.bank)
    reward = RewardModel(encoder, by_class(feats, bank_pids, pids), rp)
    policy = Policy(bundle.transformer, rp.lora_rank, rp.full_finetune, rp.seed)
    policy.model.to(device)
    opt = torch.optim.AdamW(policy.params.values(), lr=rp.lr, weight_decay=0.0)
    sampler = Sampler(bundle, rp.sampler_steps, eta=rp.eta, guidance=rp.guidance)
    tracker = PerClassTracker(rp.tracker_buffer, rp.tracker_min_count)
    classes = ClassSampler(len(pids), rp.curriculum_floor, rp.curriculum_smoothing, rp.curriculum_bonus, rp.seed)
    rng, g = np.random.default_rng(rp.seed), torch.Generator().manual_seed(rp.seed)
    before = evaluate_policy(bundle, sampler, reward, len(pids), rp.eval_per_id, rp.eval_seed)
    t0 = time.time()
    for step in tqdm(range(rp.steps), desc="rl", disable=not progress):
        ids = classes.sample(rp.ids_per_step) if rp.curriculum else rng.choice(len(pids), rp.ids_per_step, replace=False)
        labels = torch.as_tensor(ids).repeat_interleave(rp.group_size).to(device)
        traj = sampler.sample(labels, g, record=True)
        images = to_uint8(to_images(bundle, traj.x0)).cpu()
        scores = reward(images, labels.cpu())
        r = combined(scores, rp.weights)
        adv = torch.as_tensor(tracker.update(labels.cpu().numpy(), r.numpy()), dtype=torch.float32, device=device)
        if rp.curriculum:
            classes.update(labels.cpu().numpy(), r.numpy())
        stats = rl_update(policy, sampler, traj, labels, adv, rp, opt, check_ratio=(step == 0))
        if log:
            comp = {f"{k}_mean": float(v.mean()) for k, v in scores.items()}
            comp.update({f"{k}_std": float(v.std()) for k, v in scores.items()})
            log({**comp, "reward_mean": float(r.mean()), "lr": rp.lr, **stats,
                 "seconds": time.time() - t0}, step)
        if artifact and rp.grid_every and (step + 1) % rp.grid_every == 0:
            rows = list(images.split(rp.group_size))
            artifact(str(save_grid(rows, Path(rp.out_dir) / f"samples_step{step + 1:04d}.png")))
    after = evaluate_policy(bundle, sampler, reward, len(pids), rp.eval_per_id, rp.eval_seed)
    save_rl(policy, rp.out_dir, rp, pids, rp.steps)
    return {**compare(before, after, rp.weights), "train_seconds": time.time() - t0}
