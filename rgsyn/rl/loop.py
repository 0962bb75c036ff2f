"""The `rl` stage: DPOK (Fan et al. 2023) on the multi-objective reward, one short loop.

Each iteration: pick identities (uniformly or by CGPO), roll out `group_size` samples per identity
with the shipping sampler (params `sampler`: the same steps, eta and guidance synthesis uses),
recording x_t and per-step log-probs. A group starts from one shared x_T, so its samples differ only
by the transitions the policy gradient scores: x_T is no action of the policy, and its share of the
reward's spread would only be noise in the group-relative advantage. Score the final images with the
reward (rgsyn.rewards on reference-encoder features); standardise each sample's reward within its
identity's group; then
DPOK's update: `inner_epochs` passes over the recorded transitions, each pass split into
`minibatches` groups of trajectories, one optimiser step per group on the clipped policy gradient +
KL to the cold-start policy. After the first step of a rollout the policy has moved, so the
importance ratio departs from 1 and the clip acts.

Held-out evaluation before and after (fixed identities and noise): R_sem, the group values of
R_cov (eq. 5) and R_exp (eq. 9) per identity, and identity consistency (top-1 of the own identity in
an encoder the reward never saw when the audit has one), each with a bootstrap s.e. over
identities; the s.e. of the change is paired (same identities and noise before and after).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from rgsyn import distributed as dist
from rgsyn import rewards as R
from rgsyn import stats
from rgsyn.config import Params, RLParams, to_dict
from rgsyn.devices import configure, resolve_device
from rgsyn.encoder import IdentityEncoder, extract_features, load_encoder
from rgsyn.generator.coldstart import load_coldstart
from rgsyn.generator.dit import DiTBundle, to_images
from rgsyn.generator.sampler import Sampler, Trajectory, per_sample_seeds
from rgsyn.generator.viz import labelled_grid, to_uint8
from rgsyn.identity import Judge, make_judge
from rgsyn.memory_bank import by_class, ensure_memory_bank, load_memory_bank
from rgsyn.provenance import git_sha
from rgsyn.rl.advantages import group_advantages
from rgsyn.rl.cgpo import ClassSampler
from rgsyn.rl.loss import dpok_loss
from rgsyn.rl.policy import LORA_TARGETS, Policy, load_policy_state

METRICS = ("r_sem", "r_cov", "r_exp", "top1")


def reward_parts(images: torch.Tensor, classes: torch.Tensor, encoder: IdentityEncoder, bank: list[torch.Tensor],
                 rp: RLParams, s_pool: float) -> dict[str, torch.Tensor]:
    """uint8 images (B, 3, H, W) of generator classes (B,) -> per-sample reward components (B,)."""
    feats = extract_features(encoder, images, device=next(encoder.parameters()).device)
    return R.score_groups(feats, classes, bank, rp.sigma, rp.alpha, rp.eps, rp.tau, s_pool)


def dpok_update(policy: Policy, sampler: Sampler, traj: Trajectory, labels: torch.Tensor, adv: torch.Tensor,
                rp: RLParams, opt: torch.optim.Optimizer, g: torch.Generator, check_ratio: bool) -> dict:
    """`rp.inner_epochs` passes over the rollout's stochastic transitions; each pass shuffles the
    trajectories into `rp.minibatches` groups and takes one optimiser step per group (gradients
    accumulated over that group's transitions). -> means of the loss statistics + ratio range.

    Several processes (rgsyn.distributed) each hold their slice of the global rollout: the shuffle is
    the global one (same generator everywhere), each process scores its members of a group with the
    loss weighted by their share of the group, and the gradients are summed across processes: the
    update is the one process would take on the whole rollout."""
    n_steps, b = traj.log_probs.shape
    rank, size = dist.world()
    lo, params = rank * b, list(policy.params.values())
    ratios, sums, count = [], {}, 0
    for epoch in range(rp.inner_epochs):
        for k, group in enumerate(torch.randperm(b * size, generator=g).chunk(rp.minibatches)):
            mb = (group[(group >= lo) & (group < lo + b)] - lo).to(labels.device)
            share = len(mb) / len(group)
            for j in range(n_steps if len(mb) else 0):
                t, xt, prev = sampler.timesteps[j].to(labels.device), traj.latents[j][mb], traj.latents[j + 1][mb]
                new = sampler.step(xt, t, labels[mb], prev=prev)
                with policy.reference() as ref_model:
                    ref = sampler.step(xt, t, labels[mb], prev=prev, model=ref_model)
                old = traj.log_probs[j][mb]
                if check_ratio and epoch == 0 and k == 0 and j == 0:
                    gap = (new.log_prob - old).abs().max().item()
                    if gap > 1e-4:
                        raise RuntimeError(f"importance ratio is not 1 before the first update (|Δ log p| = "
                                           f"{gap:.2e}): rollout and update disagree (dropout, train-mode layers "
                                           "or dtype)")
                loss, st = dpok_loss(new.log_prob.float(), old.float(), adv[mb], new.mean.float(), ref.mean.float(),
                                     new.std.float(), rp.clip_range, rp.kl_weight)
                (loss * share / n_steps).backward()
                ratios.append(torch.exp(new.log_prob.detach().float() - old.float()))
                for key, v in st.items():
                    sums[key] = sums.get(key, 0.0) + v
                count += 1
            dist.sync_grads(params, op="sum")
            gn = torch.nn.utils.clip_grad_norm_(params, rp.max_grad_norm)
            sums["grad_norm"] = sums.get("grad_norm", 0.0) + float(gn) * n_steps
            opt.step()
            opt.zero_grad(set_to_none=True)
    r = torch.cat(ratios) if ratios else torch.ones(1)
    out = {k: v / max(count, 1) for k, v in sums.items() if not k.startswith("ratio_")}
    out.update(ratio_min=r.min().item(), ratio_max=r.max().item(), ratio_mean=r.mean().item(),
               optimizer_steps=rp.inner_epochs * min(rp.minibatches, b * size))
    return out


@torch.no_grad()
def evaluate_policy(sampler: Sampler, encoder: IdentityEncoder, bank: list[torch.Tensor], judge: Judge,
                    rp: RLParams, s_pool: float, batch: int = 128) -> dict[str, np.ndarray]:
    """Held-out samples (`eval_per_id` per identity, fixed seeds) -> per-identity values (C,) of each
    metric in METRICS, plus the images (for grids)."""
    n = len(bank)
    classes = torch.arange(n).repeat_interleave(rp.eval_per_id)
    images = sampler.images(classes, per_sample_seeds(rp.eval_seed, len(classes)), batch)
    feats = extract_features(encoder, images, device=next(encoder.parameters()).device)
    groups = R.group_values(feats, classes, bank, rp.sigma, rp.alpha, rp.eps, rp.tau, s_pool)
    hits = judge(images, classes)["hits"].double().view(n, rp.eval_per_id).mean(1).numpy()
    return {**{k: groups[k].numpy() for k in ("r_sem", "r_cov", "r_exp")}, "top1": hits, "images": images}


def compare(before: dict, after: dict) -> dict:
    """Means before/after over identities, the paired change and bootstrap s.e. (identities resampled)."""
    out = {"before": {}, "after": {}, "se": {}, "se_before": {}, "se_after": {}, "change": {}}
    for k in METRICS:
        d = stats.paired_difference(before[k], after[k])
        out["before"][k], out["after"][k] = float(before[k].mean()), float(after[k].mean())
        out["se"][k], out["change"][k] = d["se"], d["mean"]
        out["se_before"][k], out["se_after"][k] = stats.bootstrap_se(before[k]), stats.bootstrap_se(after[k])
    return out


def save_rl(policy: Policy, out_dir: str | Path, rp: RLParams, pids: list[int], step: int) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(policy.state(), str(out / "adapter.safetensors"))
    (out / "rl.json").write_text(json.dumps({"coldstart": rp.coldstart, "lora_rank": rp.lora_rank,
                                             "lora_targets": rp.lora_targets, "full_finetune": rp.full_finetune,
                                             "pids": pids, "step": step, "config": to_dict(rp),
                                             "git_sha": git_sha()}, indent=1))
    return out


def load_rl(path: str | Path, merge: bool = True) -> tuple[DiTBundle, list[int]]:
    """The fine-tuned generator: the cold-start model with an RL run's tensors (LoRA merged when `merge`)."""
    meta = json.loads((Path(path) / "rl.json").read_text())
    bundle, pids = load_coldstart(meta["coldstart"])
    state = load_file(str(Path(path) / "adapter.safetensors"))
    bundle.transformer = load_policy_state(bundle.transformer, state, meta["lora_rank"], meta["full_finetune"],
                                           merge, meta.get("lora_targets", LORA_TARGETS)).eval()
    bundle.transformer.requires_grad_(False)
    return bundle, pids


class RewardSetup(NamedTuple):
    bundle: DiTBundle           # the cold-start generator
    pids: list[int]             # its label table's identities
    encoder: IdentityEncoder    # the reward's reference encoder
    bank: list[torch.Tensor]    # per identity: (n_c, D) float64 memory-bank features
    s_pool: float               # pooled spread of the bank (eq. 9's scale)
    judge: Judge                # identity consistency (the audit's encoder where there is one)


def load_reward_setup(params: Params, device: str | torch.device = "cpu") -> RewardSetup:
    """What RL scores with, loaded from the default run's outputs (also the RL benches' starting point)."""
    from rgsyn.data.images import load_images
    from rgsyn.data.layouts import member_split

    rp = params.rl
    bundle, pids = load_coldstart(rp.coldstart)
    bundle.to(device).transformer.eval()
    encoder = load_encoder(params.reference.out_dir, device)
    ensure_memory_bank(rp.bank, params.data, encoder)
    feats, bank_pids = load_memory_bank(rp.bank)
    bank = [b.double() for b in by_class(feats, bank_pids, pids)]
    members, _ = member_split(params.data)
    table = {p: i for i, p in enumerate(pids)}
    real = load_images([r.path for r in members], encoder.cfg.height, encoder.cfg.width)
    judge = make_judge(params, encoder, real, torch.tensor([table[r.pid] for r in members]), len(pids))
    return RewardSetup(bundle, pids, encoder, bank, R.pooled_spread(bank), judge)


def run_rl(params: Params, log: Callable[[dict, int], None] | None = None,
           artifact: Callable[[str], None] | None = None, progress: bool = True) -> dict:
    rp, sp = params.rl, params.sampler
    configure(params.compute)
    launched = dist.init_from_env()
    if rp.group_size < 4:
        raise ValueError(f"params.yaml: rl.group_size = {rp.group_size}; group-relative advantages and R_exp's "
                         "leave-one-out credit need at least 4 samples per identity")
    device = launched or resolve_device(rp.device)
    bundle, pids, encoder, bank, s_pool, judge = load_reward_setup(params, device)
    if params.compute.grad_checkpointing:  # DiT-XL/2: recompute block activations in the DPOK backward
        bundle.transformer.enable_gradient_checkpointing()
    policy = Policy(bundle.transformer, rp.lora_rank, rp.full_finetune, rp.seed, rp.lora_targets)
    policy.model.to(device)
    opt = torch.optim.AdamW(policy.param_groups(rp.lr, rp.table_lr), weight_decay=0.0)
    sampler = Sampler(bundle, sp.steps, eta=sp.eta, guidance=sp.guidance, precision=params.compute.precision)
    picker = ClassSampler(len(pids), rp.curriculum_floor, rp.curriculum_smoothing, rp.curriculum_bonus, rp.seed)
    rng, g = np.random.default_rng(rp.seed), torch.Generator().manual_seed(rp.seed)
    main = dist.is_main()
    before = evaluate_policy(sampler, encoder, bank, judge, rp, s_pool) if main else None
    t0, kls = time.time(), []
    for step in tqdm(range(rp.steps), desc="rl", disable=not progress or not main):
        # every process draws the same global identities and seeds and rolls out its share of them
        ids = picker.sample(rp.ids_per_step) if rp.curriculum else rng.choice(len(pids), rp.ids_per_step, replace=False)
        seeds = rng.integers(0, 2 ** 62, len(ids) * rp.group_size).tolist()
        mine = dist.local_rows(len(ids))
        labels = torch.as_tensor(ids[mine]).repeat_interleave(rp.group_size).to(device)
        seeds = seeds[mine.start * rp.group_size:mine.stop * rp.group_size]
        start = [seeds[i - i % rp.group_size] for i in range(len(seeds))]  # one x_T per group (docstring)
        traj = sampler.sample(labels, seeds, record=True, start_seeds=start)
        images = to_uint8(to_images(bundle, traj.x0)).cpu()
        parts = reward_parts(images, labels.cpu(), encoder, bank, rp, s_pool)
        # eq. 10 standardises over the whole (global) batch
        every = {k: dist.gather_values(v) for k, v in parts.items()}
        r_all = R.combine_rewards(every["r_sem"], every["r_cov"], every["r_exp"], tuple(rp.weights))
        r = r_all[mine.start * rp.group_size:mine.stop * rp.group_size]
        adv = torch.as_tensor(group_advantages(labels.cpu().numpy(), r.numpy()), dtype=torch.float32, device=device)
        if rp.curriculum:
            picker.update(torch.as_tensor(ids).repeat_interleave(rp.group_size).numpy(), r_all.numpy())
        st = dpok_update(policy, sampler, traj, labels, adv, rp, opt, g, check_ratio=(step == 0))
        kls.append(st["kl"])
        parts, r = every, r_all
        if log and main:
            log({**{f"reward/{k}": float(v.mean()) for k, v in parts.items()}, "reward/combined": float(r.mean()),
                 **{f"update/{k}": v for k, v in st.items()}, "update/lr": rp.lr, "update/seconds": time.time() - t0}, step)
        if artifact and main and rp.grid_every and (step + 1) % rp.grid_every == 0:
            path = Path(rp.out_dir) / f"samples_step{step + 1:04d}.png"
            shown = ids[mine][:8]  # this process's identities
            rows = [[images[labels.cpu() == y]] for y in shown]
            artifact(str(labelled_grid(rows, path, [("generated", rp.group_size)],
                                       row_labels=[f"id {pids[y]}" for y in shown],
                                       title=f"RL step {step + 1}: one group per identity")))
    if not main:
        return {}
    after = evaluate_policy(sampler, encoder, bank, judge, rp, s_pool)
    save_rl(policy, rp.out_dir, rp, pids, rp.steps)
    return {**compare(before, after), "judge": judge.name, "kl_last": kls[-1] if kls else 0.0,
            "kl_max": max(kls) if kls else 0.0, "train_seconds": time.time() - t0,
            "eval": {"per_id": rp.eval_per_id, "identities": len(pids)}, "processes": dist.world()[1]}


if __name__ == "__main__":
    # torchrun --nproc_per_node=N -m rgsyn.rl.loop params.yaml; one process: python -m rgsyn.rl.loop params.yaml
    # --set rl.steps=40 rl.out_dir=/tmp/rl rl.metrics=/tmp/rl/rl.json (an RL run beside the pipeline's own)
    import argparse

    from rgsyn.config import load_params, parse_overrides

    ap = argparse.ArgumentParser(prog="python -m rgsyn.rl.loop")
    ap.add_argument("params", nargs="?", default="params.yaml")
    ap.add_argument("--set", nargs="*", default=[], help="key=value overrides of the params file")
    a = ap.parse_args()
    p = load_params(a.params, parse_overrides(a.set))
    out = run_rl(p)
    if dist.is_main():
        Path(p.rl.metrics).parent.mkdir(parents=True, exist_ok=True)
        Path(p.rl.metrics).write_text(json.dumps(out, indent=1))
