"""rgsyn's sampler vs diffusers' DiTPipeline: images/s on the same model, steps, batch and guidance.

python bench/sampling.py [--steps 25] [--batch 16] [--guidance 4.0] [--repeats 3]
Both sides run DDIM (eta 0) with classifier-free guidance and decode through the same VAE. The model
has 1000 classes because DiTPipeline hard-codes the null label 1000.
"""
import argparse
import time

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline

from rgsyn.generator.dit import DiTBundle, build_dit, to_images
from rgsyn.generator.sampler import Sampler


def build(sample_size: int):
    torch.manual_seed(0)
    dit = build_dit("small", sample_size, 4, num_classes=1000, learned_sigma=True, num_layers=8,
                    num_attention_heads=4, attention_head_dim=32, patch_size=2).eval()
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(32, 32), latent_channels=4, norm_num_groups=8, layers_per_block=1).eval()
    return dit, vae, DDIMScheduler(num_train_timesteps=1000, clip_sample=False)


def timed_pair(a, b, repeats: int) -> tuple[float, float]:
    """Median seconds of a and b, run alternately so machine drift hits both sides alike."""
    a(), b()  # warm-up
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return float(np.median(ta)), float(np.median(tb))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--sample-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    dit, vae, sched = build(a.sample_size)
    pipe = DiTPipeline(transformer=dit, vae=vae, scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    bundle = DiTBundle(dit, sched, vae, 1)
    sampler = Sampler(bundle, a.steps, eta=0.0, guidance=a.guidance)
    labels = list(range(a.batch))

    def ours():
        with torch.inference_mode():
            return to_images(bundle, sampler.sample(torch.tensor(labels), generator=torch.Generator().manual_seed(0)).x0)

    def theirs():
        return pipe(class_labels=labels, guidance_scale=a.guidance, num_inference_steps=a.steps,
                    generator=torch.Generator().manual_seed(0), output_type="np").images

    t_ours, t_pipe = timed_pair(ours, theirs, a.repeats)
    print("| sampler | steps | batch | guidance | images/s |\n| --- | --- | --- | --- | --- |")
    print(f"| rgsyn Sampler | {a.steps} | {a.batch} | {a.guidance} | {a.batch / t_ours:.2f} |")
    print(f"| diffusers DiTPipeline | {a.steps} | {a.batch} | {a.guidance} | {a.batch / t_pipe:.2f} |")
    print(f"ratio: sampler_vs_pipeline={t_pipe / t_ours:.3f}")


if __name__ == "__main__":
    main()
