"""Denoising training shared by the `prior` and `coldstart` stages: loss, EMA, resumable checkpoints.

Noising, targets (scheduler.add_noise / get_velocity), the EMA (EMAModel) and the warm-up
(get_constant_schedule_with_warmup) are diffusers' own.

Checkpoints carry their own description (config, step, git sha) and hold only tensors: trainable
weights + EMA in safetensors, optimizer/RNG state via torch.save loaded with weights_only=True.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.optimization import get_constant_schedule_with_warmup
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from rgsyn.devices import autocast
from rgsyn.provenance import git_sha
from rgsyn.generator.dit import DiTBundle, null_label, to_model_space
from rgsyn.generator.sampler import split_prediction


def diffusion_target(scheduler: DDPMScheduler, x0, noise, t):
    """What the model learns to predict at x_t = add_noise(x0, noise, t): the scheduler's own targets."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    if kind == "sample":
        return x0
    raise ValueError(f"prediction_type {kind!r} not supported (epsilon, v_prediction, sample)")


def denoise_loss(bundle: DiTBundle, x0: torch.Tensor, labels: torch.Tensor, g: torch.Generator,
                 label_dropout: float) -> torch.Tensor:
    """MSE of the model's prediction at a uniformly drawn timestep (x0 in model space).

    Labels are replaced by the null label with prob. `label_dropout` here, once for all blocks, so the
    model learns the unconditional prediction guidance needs.
    """
    sched = bundle.scheduler
    b = x0.shape[0]
    t = torch.randint(0, sched.config.num_train_timesteps, (b,), generator=g).to(x0.device)
    noise = torch.randn(x0.shape, generator=g).to(x0.device)
    xt = sched.add_noise(x0, noise, t)
    drop = (torch.rand(b, generator=g) < label_dropout).to(x0.device)
    labels = torch.where(drop, torch.full_like(labels, null_label(bundle.transformer)), labels)
    pred = split_prediction(bundle.transformer(xt, timestep=t, class_labels=labels).sample, bundle.channels)
    return F.mse_loss(pred.float(), diffusion_target(sched, x0, noise, t))


def trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters by name, each shared tensor once."""
    out, seen = {}, set()
    for k, v in model.named_parameters():
        if v.requires_grad and id(v) not in seen:
            seen.add(id(v))
            out[k] = v
    return out


def save_checkpoint(path: Path, model, ema: EMAModel, opt, sched, step: int, config: dict, g: torch.Generator,
                    **meta):
    """Atomic: write to a temp folder, then rename over the old checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    params = trainable(model)
    save_file({k: v.detach().cpu().contiguous() for k, v in params.items()}, str(tmp / "weights.safetensors"))
    save_file({k: v.detach().cpu().contiguous() for k, v in zip(params, ema.shadow_params)},
              str(tmp / "ema.safetensors"))
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict(), "rng": g.get_state(),
                "ema_step": ema.optimization_step}, tmp / "train_state.pt")
    (tmp / "checkpoint.json").write_text(json.dumps({"step": step, "config": config, "git_sha": git_sha(), **meta},
                                                    indent=1, default=str))
    if path.exists():
        for f in path.iterdir():
            f.unlink()
        path.rmdir()
    tmp.rename(path)


def load_checkpoint(path: Path, model, ema: EMAModel, opt, sched, g: torch.Generator) -> int:
    """Restore a checkpoint written by save_checkpoint; returns its step."""
    params = trainable(model)
    weights = load_file(str(path / "weights.safetensors"))
    missing = sorted(set(params) - set(weights))
    if missing:
        raise ValueError(f"{path}: checkpoint lacks trainable tensor {missing[0]}; it was made for another "
                         "model or stage. Delete it to start afresh.")
    with torch.no_grad():
        for k, v in params.items():
            v.copy_(weights[k])
    shadow = load_file(str(path / "ema.safetensors"))
    ema.shadow_params = [shadow[k].to(v.device) for k, v in params.items()]
    state = torch.load(path / "train_state.pt", weights_only=True)
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    g.set_state(state["rng"])
    ema.optimization_step = state["ema_step"]
    return json.loads((path / "checkpoint.json").read_text())["step"]


def _same_run(saved: dict, config: dict) -> bool:
    """A checkpoint continues this run if only the length differs (extending or cutting training)."""
    def strip(d):
        return {k: v for k, v in json.loads(json.dumps(d, default=str)).items() if k not in ("steps", "ckpt_every")}
    return strip(saved) == strip(config)


def train_denoiser(bundle: DiTBundle, images: torch.Tensor, labels: torch.Tensor, *, steps: int, batch: int,
                   lr: float, weight_decay: float, warmup: int, ema_decay: float, label_dropout: float,
                   seed: int, flip: bool, ckpt_dir: str | Path | None, ckpt_every: int, config: dict,
                   log: Callable[[dict, int], None] | None = None, progress: bool = True,
                   device: str | torch.device = "cpu", precision: str = "fp32",
                   body_lr: float | None = None) -> EMAModel:
    """Train the bundle's trainable parameters on (images uint8 (N, 3, H, W), labels (N,)): the label
    tables at `lr`, every other trainable tensor at `body_lr` (None: `lr` too).

    Resumes from `ckpt_dir` when it holds a checkpoint; returns the EMA (`ema.copy_to` to sample).
    """
    model = bundle.to(device).transformer.train()
    params = trainable(model)
    table = [v for k, v in params.items() if "class_embedder" in k]
    body = [v for k, v in params.items() if "class_embedder" not in k]
    groups = ([{"params": table, "lr": lr}, {"params": body, "lr": body_lr}] if body_lr is not None and table and body
              else [{"params": list(params.values()), "lr": lr}])
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    sched = get_constant_schedule_with_warmup(opt, warmup)
    ema = EMAModel(params.values(), decay=ema_decay)
    g = torch.Generator().manual_seed(seed)
    start = 0
    ckpt = Path(ckpt_dir) if ckpt_dir else None
    if ckpt and (ckpt / "checkpoint.json").exists():
        if _same_run(json.loads((ckpt / "checkpoint.json").read_text())["config"], config):
            start = load_checkpoint(ckpt, model, ema, opt, sched, g)
        else:  # params changed since that state was written: resuming would mix two runs
            print(f"{ckpt}: checkpoint made with other params; training from step 0")
    t0, bar = time.time(), tqdm(range(start, steps), desc="denoise", disable=not progress, initial=start, total=steps)
    for step in bar:
        idx = torch.randint(0, len(images), (batch,), generator=g)
        x = images[idx].to(device).float() / 127.5 - 1  # (B, 3, H, W) in [-1, 1]
        if flip:
            m = (torch.rand(batch, generator=g) < 0.5).to(device).view(-1, 1, 1, 1)
            x = torch.where(m, x.flip(-1), x)
        with torch.no_grad():
            x0 = to_model_space(bundle, x)
        with autocast(device, precision):
            loss = denoise_loss(bundle, x0, labels[idx].to(device), g, label_dropout)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        opt.step()
        sched.step()
        ema.step(params.values())
        if log and (step % 25 == 0 or step == steps - 1):
            log({"denoise/loss": loss.item(), "denoise/grad_norm": float(gn), "denoise/lr": opt.param_groups[0]["lr"],
                 "denoise/steps_per_s": (step + 1 - start) / (time.time() - t0)}, step)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if ckpt and ckpt_every and ((step + 1) % ckpt_every == 0 or step + 1 == steps):
            save_checkpoint(ckpt, model, ema, opt, sched, step + 1, config, g)
    model.eval()
    return ema
