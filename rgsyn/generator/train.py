"""Denoising training shared by the `prior` and `coldstart` stages: loss, EMA, resumable checkpoints.

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
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from rgsyn.encoder import git_sha
from rgsyn.generator.dit import DiTBundle, null_label, to_model_space
from rgsyn.generator.sampler import split_prediction


def diffusion_target(x0, noise, abar, prediction_type: str):
    a, s = abar.sqrt().view(-1, 1, 1, 1), (1 - abar).sqrt().view(-1, 1, 1, 1)
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return a * noise - s * x0
    if prediction_type == "sample":
        return x0
    raise ValueError(f"prediction_type {prediction_type!r} not supported")


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
    abar = sched.alphas_cumprod.to(x0.device)[t].float()
    xt = abar.sqrt().view(-1, 1, 1, 1) * x0 + (1 - abar).sqrt().view(-1, 1, 1, 1) * noise
    drop = (torch.rand(b, generator=g) < label_dropout).to(x0.device)
    labels = torch.where(drop, torch.full_like(labels, null_label(bundle.transformer)), labels)
    pred = split_prediction(bundle.transformer(xt, timestep=t, class_labels=labels).sample, bundle.channels)
    return F.mse_loss(pred, diffusion_target(x0, noise, abar, sched.config.prediction_type))


class EMA:
    """Exponential moving average of the trainable parameters (with the usual warm-up of the decay)."""

    def __init__(self, params: dict[str, torch.Tensor], decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in params.items()}
        self.updates = 0

    @torch.no_grad()
    def update(self, params: dict[str, torch.Tensor]):
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in params.items():
            self.shadow[k].lerp_(v.detach().float(), 1 - d)

    @torch.no_grad()
    def copy_to(self, params: dict[str, torch.Tensor]):
        for k, v in params.items():
            v.copy_(self.shadow[k].to(v.dtype))


def trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters by name, each shared tensor once."""
    out, seen = {}, set()
    for k, v in model.named_parameters():
        if v.requires_grad and id(v) not in seen:
            seen.add(id(v))
            out[k] = v
    return out


def save_checkpoint(path: Path, model, ema: EMA, opt, step: int, config: dict, g: torch.Generator, **meta):
    """Atomic: write to a temp folder, then rename over the old checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in trainable(model).items()}, str(tmp / "weights.safetensors"))
    save_file({k: v.cpu().contiguous() for k, v in ema.shadow.items()}, str(tmp / "ema.safetensors"))
    torch.save({"opt": opt.state_dict(), "rng": g.get_state(), "ema_updates": ema.updates}, tmp / "train_state.pt")
    (tmp / "checkpoint.json").write_text(json.dumps({"step": step, "config": config, "git_sha": git_sha(), **meta},
                                                    indent=1, default=str))
    if path.exists():
        for f in path.iterdir():
            f.unlink()
        path.rmdir()
    tmp.rename(path)


def load_checkpoint(path: Path, model, ema: EMA, opt, g: torch.Generator) -> int:
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
    ema.shadow = {k: v.float() for k, v in load_file(str(path / "ema.safetensors")).items()}
    state = torch.load(path / "train_state.pt", weights_only=True)
    opt.load_state_dict(state["opt"])
    g.set_state(state["rng"])
    ema.updates = state["ema_updates"]
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
                   device: str | torch.device = "cpu") -> EMA:
    """Train the bundle's trainable parameters on (images uint8 (N, 3, H, W), labels (N,)).

    Resumes from `ckpt_dir` when it holds a checkpoint; returns the EMA (copy it in to sample).
    """
    model = bundle.transformer.to(device).train()
    params = trainable(model)
    opt = torch.optim.AdamW(params.values(), lr=lr, weight_decay=weight_decay)
    ema = EMA(params, ema_decay)
    g = torch.Generator().manual_seed(seed)
    start = 0
    ckpt = Path(ckpt_dir) if ckpt_dir else None
    if ckpt and (ckpt / "checkpoint.json").exists():
        if _same_run(json.loads((ckpt / "checkpoint.json").read_text())["config"], config):
            start = load_checkpoint(ckpt, model, ema, opt, g)
        else:  # params changed since that state was written: resuming would mix two runs
            print(f"{ckpt}: checkpoint made with other params; training from step 0")
    t0, bar = time.time(), tqdm(range(start, steps), desc="denoise", disable=not progress, initial=start, total=steps)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / max(1, warmup))
        idx = torch.randint(0, len(images), (batch,), generator=g)
        x = images[idx].to(device).float() / 127.5 - 1  # (B, 3, H, W) in [-1, 1]
        if flip:
            m = (torch.rand(batch, generator=g) < 0.5).to(device).view(-1, 1, 1, 1)
            x = torch.where(m, x.flip(-1), x)
        with torch.no_grad():
            x0 = to_model_space(bundle, x)
        loss = denoise_loss(bundle, x0, labels[idx].to(device), g, label_dropout)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        opt.step()
        ema.update(params)
        if log and (step % 25 == 0 or step == steps - 1):
            log({"loss": loss.item(), "grad_norm": float(gn), "lr": opt.param_groups[0]["lr"],
                 "steps_per_s": (step + 1 - start) / (time.time() - t0)}, step)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if ckpt and ckpt_every and ((step + 1) % ckpt_every == 0 or step + 1 == steps):
            save_checkpoint(ckpt, model, ema, opt, step + 1, config, g)
    model.eval()
    return ema
