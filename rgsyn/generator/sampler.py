"""Stochastic DDIM transitions with their Gaussian log-probabilities, and the batched sampler that RL
optimises and synthesis ships (one procedure: steps, eta, guidance).

`ddim_step` is diffusers' `DDIMScheduler.step` with the changes its docstring lists; the timestep grid
is `DDIMScheduler.set_timesteps`' own for `sampler.spacing` (leading | trailing | linspace), and the
schedule constants are read from the checkpoint's scheduler config.

Conventions (used by RL, keep them in one place):
- log_prob is the Gaussian log-density of the transition *averaged over dimensions* (ddpo-pytorch's
  scale), so importance ratios and the KL (rgsyn.rl) are per-dimension quantities of the same scale.
- The last DDIM step goes to alpha_bar = 1 and has std = 0: it is deterministic, has no log-prob
  (None), and RL never optimises it.
- Learned-sigma channels (DiT-XL/2) are dropped: transitions use the scheduler's fixed variance.
- Classifier-free guidance lives inside the mean (`predict`), so the log-prob and its gradient are
  those of the guided policy, null-label path included.
- Noise can come from one generator per sample (`seeds`): x_T and every stochastic step's noise of a
  sample depend on its own seed only, not on the batch or worker that drew it. x_T and the steps'
  noise are two streams derived from the seed (`stream_seed`), so x_T never repeats a step's noise,
  also where RL starts a group's samples from one member's x_T.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDIMScheduler

from rgsyn.devices import autocast
from rgsyn.generator.dit import DiTBundle, null_label, to_images
from rgsyn.generator.viz import to_uint8

LOG_2PI = math.log(2 * math.pi)


@dataclass
class StepOut:
    prev: torch.Tensor  # (B, C, H, W) x_{t_prev}
    mean: torch.Tensor  # (B, C, H, W)
    std: torch.Tensor  # (B,)
    log_prob: torch.Tensor | None  # (B,); None where the step is deterministic
    x0: torch.Tensor  # (B, C, H, W) predicted clean sample


def _bc(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def split_prediction(out: torch.Tensor, channels: int) -> torch.Tensor:
    """Drop learned-sigma channels: (B, 2C, H, W) -> (B, C, H, W)."""
    return out[:, :channels] if out.shape[1] == 2 * channels else out


def predict(bundle: DiTBundle, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
            guidance: float = 1.0, model=None, precision: str = "fp32", uncond_grad: bool = True) -> torch.Tensor:
    """Model prediction with classifier-free guidance (one batched call of size 2B when guiding), in
    fp32 whatever the forward's precision (transition means and log-probs are computed from it).

    `model` replaces the bundle's transformer for this call (RL's frozen reference policy).
    `uncond_grad` False: the unconditional branch is a constant for autograd (pathwise RL's choice).
    """
    model = model or bundle.transformer
    t = t.expand(x.shape[0]) if t.dim() == 0 else t
    with autocast(x.device, precision):
        if guidance == 1.0:
            return split_prediction(model(x, timestep=t, class_labels=labels).sample, bundle.channels).float()
        null = torch.full_like(labels, null_label(bundle.transformer))
        out = model(torch.cat([x, x]), timestep=torch.cat([t, t]), class_labels=torch.cat([labels, null])).sample
    cond, uncond = split_prediction(out, bundle.channels).float().chunk(2)
    if not uncond_grad:
        uncond = uncond.detach()
    return uncond + guidance * (cond - uncond)


def x0_eps(pred: torch.Tensor, x: torch.Tensor, abar: torch.Tensor, prediction_type: str):
    """(x0, eps) from a model prediction; abar is (B,)."""
    a, s = _bc(abar.sqrt()), _bc((1 - abar).sqrt())
    if prediction_type == "epsilon":
        return (x - s * pred) / a, pred
    if prediction_type == "v_prediction":
        return a * x - s * pred, a * pred + s * x
    if prediction_type == "sample":
        return pred, (x - a * pred) / s
    raise ValueError(f"prediction_type {prediction_type!r} not supported (epsilon, v_prediction, sample)")


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, std^2 I) averaged over the non-batch dimensions -> (B,)."""
    var = _bc(std) ** 2
    lp = -((x.detach() - mean) ** 2) / (2 * var) - _bc(std).log() - 0.5 * LOG_2PI
    return lp.mean(dim=tuple(range(1, x.dim())))


def _finish(mean, std, x0, noise, prev) -> StepOut:
    deterministic = bool((std == 0).all())
    if prev is None:
        prev = mean if deterministic else mean + _bc(std) * noise
    if deterministic:
        return StepOut(prev, mean, std, None, x0)
    if (std == 0).any():
        raise ValueError("a batch mixes deterministic (final) and stochastic steps; give them separately")
    return StepOut(prev, mean, std, gaussian_log_prob(prev, mean, std), x0)


def ddim_step(pred, t, t_prev, x, alphas_cumprod, eta: float, prediction_type: str,
              noise=None, prev=None, final_alpha: float = 1.0) -> StepOut:
    """One DDIM step (eq. 12 of "Denoising Diffusion Implicit Models", Song et al., arXiv:2010.02502)
    from t to t_prev (t_prev < 0: to `final_alpha`).

    Follows `diffusers.DDIMScheduler.step` of diffusers 0.42.1 (steps 2-3 and 5-7 of that function: x0
    and eps for the epsilon, v_prediction and sample prediction types, sigma_t(eta), the direction to
    x_t) and differs from it in these ways:

    1. it returns the transition's mean, std and Gaussian log-prob beside the sample and x0 (as
       ddpo-pytorch's `ddim_step_with_logprob`);
    2. `prev` scores a recorded transition instead of drawing one;
    3. t and t_prev are tensors (B,): RL batches transitions of many trajectories, each at its own step;
    4. t_prev is given: the caller's grid names the next step, where diffusers takes
       t - num_train_timesteps // num_inference_steps whatever the spacing (the same for leading and
       trailing, not for linspace);
    5. no clipping or thresholding of x0 (`clip_sample`, `thresholding` and `use_clipped_model_output`
       are never read: every rgsyn scheduler has them off) and `final_alpha` stands for
       `set_alpha_to_one=True`'s final alpha_bar of 1;
    6. the variance and the direction's coefficient are clamped at 0 against rounding below zero;
    7. `noise` plays `variance_noise`; without it (and without `prev`) the noise is `torch.randn_like`.

    tests/test_generator.py checks the sample, mean and x0 against diffusers for all three prediction
    types, deterministic and stochastic.
    """
    ac = alphas_cumprod.to(x.device)
    abar = ac[t]
    abar_prev = torch.where(t_prev >= 0, ac[t_prev.clamp(min=0)], torch.full_like(abar, final_alpha))
    x0, eps = x0_eps(pred, x, abar, prediction_type)
    var = (1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)
    std = eta * var.clamp(min=0).sqrt()
    mean = _bc(abar_prev.sqrt()) * x0 + _bc((1 - abar_prev - std ** 2).clamp(min=0).sqrt()) * eps
    if noise is None and prev is None and eta > 0:
        noise = torch.randn_like(x)
    return _finish(mean, std, x0, noise, prev)



@dataclass
class Trajectory:
    x0: torch.Tensor  # (B, C, H, W) final sample in model space
    latents: torch.Tensor | None  # (S+1, B, C, H, W) x_T ... x_0 when recorded
    log_probs: torch.Tensor | None  # (S', B) per stochastic step when recorded
    timesteps: torch.Tensor  # (S,)


def per_sample_seeds(seed: int, n: int) -> list[int]:
    """n independent 63-bit seeds from one seed (numpy SeedSequence): one noise stream per sample."""
    state = np.random.SeedSequence(seed).generate_state(n, np.uint64) >> np.uint64(1)
    return [int(v) for v in state]


X_T, STEPS = 0, 1  # the two noise streams of a sample's seed


def stream_seed(seed: int, stream: int) -> int:
    """The 63-bit seed of stream `stream` (X_T or STEPS) of a sample's seed: independent streams."""
    return int(np.random.SeedSequence([int(seed), stream]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class _Noise:
    """Gaussian noise for a batch: from one generator per sample (stream `stream` of each of `seeds`) or
    one shared generator."""

    def __init__(self, shape, device, seeds=None, generator=None, stream: int = STEPS):
        self.shape, self.device = shape, device
        self.gens = ([torch.Generator().manual_seed(stream_seed(s, stream)) for s in seeds] if seeds is not None
                     else None)
        self.generator = generator

    def __call__(self) -> torch.Tensor:
        if self.gens is None:
            return torch.randn(self.shape, generator=self.generator, device=self.device)
        return torch.stack([torch.randn(self.shape[1:], generator=g) for g in self.gens]).to(self.device)


SPACINGS = ("leading", "trailing", "linspace")


def timestep_grid(scheduler_config, num_steps: int, spacing: str) -> torch.Tensor:
    """The descending timesteps (S,) of diffusers' `DDIMScheduler.set_timesteps` for `spacing`."""
    if spacing not in SPACINGS:
        raise ValueError(f"sampler.spacing = {spacing!r}: use one of {SPACINGS}")
    ddim = DDIMScheduler.from_config(scheduler_config, timestep_spacing=spacing)
    ddim.set_timesteps(num_steps)
    return ddim.timesteps.long()


class Sampler:
    """Batched DDIM(eta) sampling over `num_steps` with classifier-free guidance and optional recording."""

    def __init__(self, bundle: DiTBundle, num_steps: int, eta: float = 1.0, guidance: float = 1.0,
                 precision: str = "fp32", model=None, spacing: str = "leading"):
        self.bundle, self.eta, self.guidance, self.precision = bundle, eta, guidance, precision
        self.model = model  # e.g. a torch.compile'd transformer for sampling; None: the bundle's own
        cfg = bundle.scheduler.config
        self.prediction_type = cfg.prediction_type
        self.alphas_cumprod = bundle.scheduler.alphas_cumprod.float()
        self.timesteps = timestep_grid(cfg, num_steps, spacing)  # (S,) descending
        # each grid step goes to the next one; the last to alpha_bar = 1 (index -1)
        self._prev = torch.full((cfg.num_train_timesteps,), -1, dtype=torch.long)
        self._prev[self.timesteps[:-1]] = self.timesteps[1:]
        # (S,) the transitions' std: eta * DDIM's sigma_t; 0 for the final, deterministic step
        ac, prev = self.alphas_cumprod, self._prev[self.timesteps]
        abar, abar_prev = ac[self.timesteps], torch.where(prev >= 0, ac[prev.clamp(min=0)], torch.ones(()))
        self.stds = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).clamp(min=0).sqrt()

    @classmethod
    def from_params(cls, bundle: DiTBundle, sp, precision: str = "fp32", model=None) -> "Sampler":
        """The shipping sampler of a `sampler` params section (steps, eta, guidance, spacing)."""
        return cls(bundle, sp.steps, eta=sp.eta, guidance=sp.guidance, precision=precision, model=model,
                   spacing=sp.spacing)

    def prev_t(self, t: torch.Tensor) -> torch.Tensor:
        return self._prev.to(t.device)[t]

    def step(self, x, t, labels, noise=None, prev=None, model=None, uncond_grad: bool = True) -> StepOut:
        tb = t.expand(x.shape[0]) if t.dim() == 0 else t
        pred = predict(self.bundle, x, tb, labels, self.guidance, model or self.model, self.precision, uncond_grad)
        return ddim_step(pred, tb, self.prev_t(tb), x, self.alphas_cumprod, self.eta, self.prediction_type,
                         noise, prev)

    def start(self, labels: torch.Tensor, seeds=None, generator: torch.Generator | None = None, start_seeds=None):
        """(x_T (B, C, H, W), the steps' noise source) for `labels`: x_T from the X_T stream of `start_seeds`
        (else of `seeds`), the noise from the STEPS stream of `seeds`; or both from `generator`."""
        shape = (len(labels), *self.bundle.sample_shape)
        noise = _Noise(shape, labels.device, seeds, generator, STEPS)
        if start_seeds is None and seeds is None:
            return noise(), noise  # one shared generator: x_T is its first draw
        x = _Noise(shape, labels.device, start_seeds if start_seeds is not None else seeds, stream=X_T)()
        return x, noise

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, seeds=None, generator: torch.Generator | None = None,
               record: bool = False, start_seeds=None) -> Trajectory:
        """Samples for `labels` (B,); noise from `seeds` (B,) (one stream per sample) or `generator`.
        `start_seeds` (B,): x_T from these streams instead (RL: one shared x_T per group, so a group's
        samples differ only by the transitions the policy gradient scores)."""
        device = labels.device
        x, noise = self.start(labels, seeds, generator, start_seeds)
        lats, lps = ([x], []) if record else (None, None)
        for t in self.timesteps.to(device):
            out = self.step(x, t, labels, noise=noise() if self.eta > 0 else None)
            x = out.prev
            if record:
                lats.append(x)
                if out.log_prob is not None:
                    lps.append(out.log_prob)
        return Trajectory(x, torch.stack(lats) if record else None,
                          torch.stack(lps) if record and lps else None, self.timesteps)

    @torch.no_grad()
    def sample_from(self, x0: torch.Tensor, noise: torch.Tensor, labels: torch.Tensor, t: int, seeds) -> torch.Tensor:
        """SDEdit: noise clean samples x0 (model space) to the grid step at or below t with `noise`, then
        run the remaining steps (their noise from the STEPS streams of `seeds`). -> final samples in model space."""
        grid = self.timesteps.to(x0.device)
        start = int(grid[grid <= t].max()) if (grid <= t).any() else int(grid.min())
        x = self.bundle.scheduler.add_noise(x0, noise, torch.full((len(x0),), start, device=x0.device))
        draw = _Noise(x0.shape, x0.device, seeds, stream=STEPS)
        for step_t in grid[grid <= start]:
            x = self.step(x, step_t, labels, noise=draw() if self.eta > 0 else None).prev
        return x

    @torch.no_grad()
    def images(self, labels: torch.Tensor, seeds, batch: int = 128) -> torch.Tensor:
        """uint8 images (N, 3, H, W) on the CPU for `labels` (N,), one seed per sample; the result does
        not depend on `batch`."""
        device = next(self.bundle.transformer.parameters()).device
        seeds = list(seeds)
        return torch.cat([to_uint8(to_images(self.bundle, self.sample(labels[a:a + batch].to(device),
                                                                       seeds[a:a + batch]).x0)).cpu()
                          for a in range(0, len(labels), batch)])
