"""The paper's sizes on one GPU: synthesis vs diffusers' DiTPipeline, RL trajectories/s, re-id images/s.

    python bench/gpu.py [--dtype bf16|fp32] [--compile] [--steps 50] [--guidance 4.0] [--batch 32]
                        [--model DIR] [--json PATH]
    python bench/gpu.py --device cpu --small     # the CPU smoke run (tests/test_bench_gpu.py)

The generator is DiT-XL/2 (latent 32x32x4, learned sigma, 1000 classes because DiTPipeline hard-codes
the null label 1000) with an AutoencoderKL of the SD/DiT VAE's shape, random weights, unless --model
names a local diffusers DiT folder. --small swaps in the tiny preset, a 2-block VAE, test_resnet at
64x32 and a few steps: same code paths, seconds of CPU.

Output lines:
- `device:` the GPU's name (torch.cuda.get_device_name) or cpu, torch version, dtype, eager/compiled.
- `synthesis:` images/s of three sides on the same images (same weights, steps, guidance, batches):
  rgsyn = one shard through rgsyn.synth.engine.Synthesizer.write (stochastic DDIM with guidance, VAE
  decode, reference-encoder features, rewards, the audit's pixel/feature copy search against a random
  reference set and its consistency gate, PNG, Parquet); sampler = that path's sampling alone (DDIM +
  guidance + decode to uint8); pipeline = DiTPipeline (DDIM eta 0, weights in the dtype, images only).
  Sides alternate after one warm-up each; each figure is the median of --repeats. Peak GPU memory per
  side counts everything resident, the other sides' weights included.
- `rl:` trajectories/s of one DPOK iteration on DiT-XL/2 with LoRA (rgsyn.rl.policy.Policy): a
  recorded rollout of `--rl-steps` steps (rgsyn's Sampler, record=True, one x_T per group) plus one
  `dpok_update` pass (params.yaml's inner_epochs and minibatches); the reward's decode and features
  are left out. Peak memory.
- `reid:` training images/s of the re-id trainer (rgsyn.downstream.trainer.fit on random uint8 images,
  ResNet-50 at 256x128, P×K 16×4 = 64 per batch, Adam, augmentation on the device); peak memory.
- `ratio: synthesis_vs_pipeline=<x> sampler_vs_pipeline=<y>`: rgsyn's images/s over the pipeline's
  (> 1: rgsyn's whole shard, or its sampling alone, outpaces the pipeline's bare images).
--json PATH writes every figure: device, torch, dtype, compile, small, model, config, synthesis, rl,
reid, ratio.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from rgsyn.config import SamplerParams, load_params
from rgsyn.devices import configure

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"
NUM_CLASSES = 1000  # DiTPipeline's null label is 1000


# -- models -----------------------------------------------------------------------------------------
def sd_vae(small: bool):
    """AutoencoderKL of stabilityai/sd-vae-ft-ema's shape (DiT's VAE: 4 blocks, 128..512 channels, 8x
    down); small: 2 blocks of 32 channels (2x down)."""
    from diffusers import AutoencoderKL

    if small:
        return AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                             block_out_channels=(32, 32), latent_channels=4, norm_num_groups=8, layers_per_block=1)
    return AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                         norm_num_groups=32, sample_size=256)


def random_bundle(small: bool, num_classes: int = NUM_CLASSES):
    """DiT-XL/2 (or the tiny preset) + VAE with random weights, as rgsyn.generator.dit.load_dit returns."""
    from rgsyn.generator.dit import DiTBundle, build_dit, make_scheduler

    torch.manual_seed(0)
    dit = build_dit("tiny", 8, 4, num_classes, learned_sigma=True) if small else \
        build_dit("xl2", 32, 4, num_classes, learned_sigma=True)
    return DiTBundle(dit.eval(), make_scheduler(), sd_vae(small).eval(), 1)


def load_generator(a, device: torch.device, dtype: torch.dtype):
    """(rgsyn bundle, DiTPipeline on the same weights in `dtype`); --model: a local diffusers DiT folder."""
    from diffusers import DDIMScheduler, DiTPipeline

    from rgsyn.generator.dit import load_dit

    if a.model:
        bundle = load_dit(a.model)
        if bundle.vae is None:
            raise SystemExit(f"--model {a.model}: no vae/ folder; DiTPipeline needs the VAE (DiTPipeline layout)")
        pipe = DiTPipeline.from_pretrained(a.model, torch_dtype=dtype, local_files_only=True)
    else:
        bundle = random_bundle(a.small)
        pipe = DiTPipeline(transformer=copy.deepcopy(bundle.transformer), vae=copy.deepcopy(bundle.vae),
                           scheduler=DDIMScheduler(num_train_timesteps=1000, clip_sample=False))
    pipe = pipe.to(device) if dtype == torch.float32 else pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    # rgsyn's stages move the transformer only; the latents' decode needs the VAE beside them
    bundle.vae.to(device)
    if a.compile:
        pipe.transformer = torch.compile(pipe.transformer)
    return bundle, pipe


def encoder(a, num_classes: int):
    from rgsyn.encoder import EncoderConfig, IdentityEncoder

    return IdentityEncoder(EncoderConfig(a.backbone, num_classes, a.embed_dim, a.height, a.width)).eval()


# -- timing -----------------------------------------------------------------------------------------
def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 3) if device.type == "cuda" else None


def reset_peak_rss():
    """Start a new peak of this process's resident memory (Linux: VmHWM restarts from the current RSS
    when "5" is written to /proc/self/clear_refs); a no-op elsewhere."""
    gc.collect()
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_gib() -> float | None:
    """Peak resident memory of this process since reset_peak_rss (VmHWM), GiB; None off Linux."""
    try:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None
    return round(int(line.split()[1]) / 2 ** 20, 3)  # kB -> GiB


@contextlib.contextmanager
def cpu_threads(n: int):
    """torch's CPU threads for the block (0: leave as is), restored after: the CPU smoke runs check code
    paths, not speed, and on a loaded 2-core machine two OpenMP threads that wait for each other made
    them ten times slower than one."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seconds(fn, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


# -- stages -----------------------------------------------------------------------------------------
def bench_synthesis(a, device, compute, bundle, pipe) -> dict:
    """One shard through rgsyn's Synthesizer vs DiTPipeline on the same images; alternating, medians."""
    from rgsyn.generator.coldstart import image_size
    from rgsyn.privacy.audit import Auditor
    from rgsyn.synth.engine import Synthesizer
    from rgsyn.synth.run import sample_seeds

    p = load_params(PARAMS)
    n = a.batch * a.batches
    if n % a.per_id:
        raise SystemExit("--batch * --batches must be a multiple of --per-id (a shard holds whole identities)")
    h, w = image_size(bundle)
    g = torch.Generator().manual_seed(0)
    unit = lambda *s: F.normalize(torch.randn(*s, generator=g), dim=1)  # noqa: E731
    ref, aud = encoder(a, NUM_CLASSES), encoder(a, NUM_CLASSES).to(device)
    bank_pids = torch.arange(NUM_CLASSES).repeat_interleave(2)  # (2C,) two real images per identity
    bank = unit(len(bank_pids), ref.dim)  # (2C, D)
    # the audit's calibrated state from random stand-ins (Auditor.build needs a real dataset): member
    # pixel vectors and their mirrors (2N, 3·h·w), member features (N, D'), prototypes (C, D')
    auditor = Auditor(aud, (h, w), unit(2 * a.ref_images, 3 * h * w), unit(a.ref_images, aud.dim),
                      torch.randint(0, NUM_CLASSES, (a.ref_images,), generator=g), unit(NUM_CLASSES, aud.dim),
                      pixel_threshold=0.95, feature_threshold=0.9, link=0.5, identity_threshold=0.9, calibration={})
    sp = dataclasses.replace(p.synth, per_id=a.per_id, batch=a.batch, device=str(device))
    syn = Synthesizer(bundle, list(range(NUM_CLASSES)), ref, bank, bank_pids, auditor, sp,
                      SamplerParams(a.steps, a.eta, a.guidance, "leading"), p.rl, NUM_CLASSES, device, compute)
    classes = list(range(n // a.per_id))
    labels = torch.tensor(classes).repeat_interleave(a.per_id).tolist()
    seeds = sample_seeds(0, n)
    tmp = tempfile.TemporaryDirectory()
    shard = Path(tmp.name) / "shard-00000.parquet"

    def ours():
        syn.write(classes, seeds, shard, {"bench": True}, "bench", "bench")

    def sampler():  # the sampling part of `ours` alone: DDIM + guidance + decode to uint8
        return [syn.sample(torch.tensor(labels[i:i + a.batch]), seeds[i:i + a.batch]) for i in range(0, n, a.batch)]

    def theirs():
        return [pipe(class_labels=labels[i:i + a.batch], guidance_scale=a.guidance, num_inference_steps=a.steps,
                     generator=torch.Generator(device).manual_seed(i), output_type="np").images
                for i in range(0, n, a.batch)]

    sides = {"rgsyn": ours, "sampler": sampler, "pipeline": theirs}
    peaks = {}
    for name, fn in sides.items():  # warm-up (and compilation) per side
        reset_peak(device)
        fn()
        peaks[name] = peak_gib(device)
    times = {name: [] for name in sides}
    for _ in range(a.repeats):
        for name, fn in sides.items():
            times[name].append(seconds(fn, device))
    rows = pq.read_table(shard, columns=["label"]).num_rows
    tmp.cleanup()
    assert rows == n, f"the shard holds {rows} rows, expected {n}"
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"images": n, **{f"{k}_images_per_s": n / v for k, v in med.items()},
            "ratio": med["pipeline"] / med["rgsyn"], "sampler_ratio": med["pipeline"] / med["sampler"],
            **{f"{k}_seconds": v for k, v in times.items()}, "peak_gib": peaks, "image_size": [h, w],
            "reference_rows": 2 * a.ref_images}


def bench_rl(a, device, compute, bundle) -> dict:
    """Rollout (record=True) + one dpok_update pass on the LoRA policy -> trajectories/s."""
    from rgsyn.generator.dit import reset_class_embedding
    from rgsyn.generator.sampler import Sampler
    from rgsyn.rl.dpok import dpok_update
    from rgsyn.rl.policy import Policy

    rp = dataclasses.replace(load_params(PARAMS).rl, ids_per_step=a.rl_ids, group_size=a.rl_group)
    model = reset_class_embedding(bundle.transformer, a.rl_classes)  # a cold start: one row per identity
    if compute.grad_checkpointing:
        model.enable_gradient_checkpointing()
    policy = Policy(model, rp.lora_rank, rp.full_finetune, rp.seed, rp.lora_targets)
    policy.model.to(device)
    opt = torch.optim.AdamW(policy.param_groups(rp.lr, rp.table_lr), weight_decay=0.0)
    sampler = Sampler(bundle, a.rl_steps, eta=1.0, guidance=a.guidance, precision=compute.precision)
    rng, g = np.random.default_rng(0), torch.Generator().manual_seed(0)
    b = rp.ids_per_step * rp.group_size
    split = {"rollout": [], "update": []}

    def iteration():
        ids = rng.choice(a.rl_classes, rp.ids_per_step, replace=False)
        labels = torch.as_tensor(ids).repeat_interleave(rp.group_size).to(device)  # (B,)
        seeds = rng.integers(0, 2 ** 62, b).tolist()
        start = [seeds[i - i % rp.group_size] for i in range(b)]  # one x_T per group, as run_rl
        t0 = time.perf_counter()
        traj = sampler.sample(labels, seeds, record=True, start_seeds=start)
        sync(device)
        t1 = time.perf_counter()
        adv = torch.randn(b, generator=g).to(device)  # (B,) the reward's values do not change the work
        dpok_update(policy, sampler, traj, labels, adv, rp, opt, g, check_ratio=False)
        sync(device)
        split["rollout"].append(t1 - t0)
        split["update"].append(time.perf_counter() - t1)

    reset_peak(device)
    iteration()  # warm-up
    for v in split.values():
        v.clear()
    for _ in range(a.repeats):
        iteration()
    total = statistics.median(r + u for r, u in zip(split["rollout"], split["update"]))
    return {"trajectories": b, "steps": a.rl_steps, "trajectories_per_s": b / total,
            "rollout_seconds": statistics.median(split["rollout"]),
            "update_seconds": statistics.median(split["update"]),
            "optimizer_steps": rp.inner_epochs * min(rp.minibatches, b), "peak_gib": peak_gib(device)}


def bench_reid(a, device, compute) -> dict:
    """rgsyn.downstream.trainer.fit on random uint8 images at the trainer size -> training images/s."""
    from rgsyn.downstream.losses import trainer_losses
    from rgsyn.downstream.trainer import fit, make_optimizer

    t = dataclasses.replace(load_params(PARAMS).reference.train, backbone=a.backbone, embed_dim=a.embed_dim,
                            height=a.height, width=a.width, p=16, k=4, epochs=1, iters_per_epoch=a.reid_iters,
                            warmup_epochs=0, lr=3.5e-4, optimizer="adam", device=str(device))
    ids, per = 64, 8
    images = torch.randint(0, 256, (ids * per, 3, a.height, a.width), dtype=torch.uint8)  # (N, 3, H, W)
    labels = np.repeat(np.arange(ids), per)
    model = encoder(a, ids).to(device)
    opt = make_optimizer(model, t)
    loss_fn, _ = trainer_losses(t)  # re-id's CE + triplet (reference.train.loss)
    run = lambda cfg: fit(model, opt, images, labels, cfg, 0, loss_fn, device=device, progress=False,  # noqa: E731
                          compute=compute)
    run(dataclasses.replace(t, iters_per_epoch=1))  # warm-up: cuDNN autotuning, compilation
    reset_peak(device)
    s = seconds(lambda: run(t), device)
    n = t.iters_per_epoch * t.p * t.k
    return {"images": n, "batch": t.p * t.k, "images_per_s": n / s, "seconds": s, "peak_gib": peak_gib(device)}


# -- main -------------------------------------------------------------------------------------------
def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda | cuda:i | cpu")
    ap.add_argument("--small", action="store_true", help="tiny sizes: the CPU smoke run")
    ap.add_argument("--dtype", choices=("bf16", "fp32"), help="default: bf16 on a GPU, fp32 on the CPU")
    ap.add_argument("--compile", action="store_true", help="torch.compile (inductor) both sides")
    ap.add_argument("--model", default="", help="a local diffusers DiT folder (DiTPipeline layout); default random")
    ap.add_argument("--steps", type=int, help="sampling steps of both sides (default 50; small 3)")
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--eta", type=float, default=1.0, help="rgsyn's DDIM eta (synthesis ships 1); the pipeline's is 0")
    ap.add_argument("--batch", type=int, help="images per sampling batch (default 32; small 4)")
    ap.add_argument("--batches", type=int, default=2, help="batches per shard")
    ap.add_argument("--per-id", type=int, default=4)
    ap.add_argument("--ref-images", type=int, help="member images of the audit's copy search (default 1024; small 64)")
    ap.add_argument("--rl-steps", type=int, help="trajectory length (default 20; small 3)")
    ap.add_argument("--rl-ids", type=int, help="identities per rollout (default 4; small 2)")
    ap.add_argument("--rl-group", type=int, default=4, help="trajectories per identity")
    ap.add_argument("--rl-classes", type=int, default=751, help="identities of the cold start (Market-1501: 751)")
    ap.add_argument("--reid-iters", type=int, help="timed training iterations (default 30; small 2)")
    ap.add_argument("--repeats", type=int, help="timed runs per side (default 3; small 1)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: 1 with --small on the CPU, else torch's)")
    ap.add_argument("--json", default="", help="write every figure here")
    a = ap.parse_args(argv)
    big = not a.small
    fill = {"steps": (50, 3), "batch": (32, 4), "ref_images": (1024, 64), "rl_steps": (20, 3), "rl_ids": (4, 2),
            "reid_iters": (30, 2), "repeats": (3, 1)}
    for k, (full, small) in fill.items():
        if getattr(a, k) is None:
            setattr(a, k, full if big else small)
    if a.threads is None:
        a.threads = 1 if a.small and a.device == "cpu" else 0
    a.dtype = a.dtype or ("bf16" if a.device.startswith("cuda") else "fp32")
    a.backbone, a.embed_dim, a.height, a.width = ("resnet50", 0, 256, 128) if big else ("test_resnet", 128, 64, 32)
    if a.small:
        a.rl_classes = min(a.rl_classes, 8)
    return a


def main(argv=None) -> dict:
    a = parse(argv)
    with cpu_threads(a.threads):
        return run(a)


def run(a: argparse.Namespace) -> dict:
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {a.device}: CUDA is not available here; use --device cpu --small")
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    cuda = device.type == "cuda"
    compute = dataclasses.replace(load_params(PARAMS).compute, precision=a.dtype, tf32=cuda, channels_last=cuda,
                                  compile="inductor" if a.compile else "", grad_checkpointing=cuda)
    configure(compute)
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    print(f"device: {name} (torch {torch.__version__}, {a.dtype}, {'compiled' if a.compile else 'eager'})", flush=True)

    bundle, pipe = load_generator(a, device, dtype)
    syn = bench_synthesis(a, device, compute, bundle, pipe)
    h, w = syn["image_size"]
    print(f"synthesis: rgsyn={syn['rgsyn_images_per_s']:.2f} sampler={syn['sampler_images_per_s']:.2f} "
          f"pipeline={syn['pipeline_images_per_s']:.2f} images/s ({syn['images']} images of {h}x{w}, {a.steps} steps, "
          f"guidance {a.guidance}, batch {a.batch}; peak GiB {syn['peak_gib']})", flush=True)
    del pipe
    rl = bench_rl(a, device, compute, bundle)
    print(f"rl: {rl['trajectories_per_s']:.3f} trajectories/s ({rl['trajectories']} x {rl['steps']} steps: rollout "
          f"{rl['rollout_seconds']:.2f} s + DPOK update {rl['update_seconds']:.2f} s; peak GiB {rl['peak_gib']})",
          flush=True)
    del bundle
    reid = bench_reid(a, device, compute)
    print(f"reid: {reid['images_per_s']:.1f} images/s ({a.backbone} {a.height}x{a.width}, batch {reid['batch']} = "
          f"16x4, {reid['images']} images; peak GiB {reid['peak_gib']})")
    print(f"ratio: synthesis_vs_pipeline={syn['ratio']:.3f} sampler_vs_pipeline={syn['sampler_ratio']:.3f}")
    out = {"device": name, "torch": torch.__version__, "dtype": a.dtype, "compile": a.compile, "small": a.small,
           "model": a.model or "random", "config": {k: v for k, v in vars(a).items() if k != "json"},
           "synthesis": syn, "rl": rl, "reid": reid,
           "ratio": {"synthesis_vs_pipeline": syn["ratio"], "sampler_vs_pipeline": syn["sampler_ratio"]}}
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
