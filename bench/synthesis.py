"""Synthesis throughput: rgsyn shards (sampling + reference features + privacy audit + rewards + PNG +
Parquet) vs diffusers' DiTPipeline producing the same number of images, in one run.

python bench/synthesis.py [--steps 25] [--batch 16] [--batches 4] [--per-id 4] [--guidance 4.0] [--repeats 5]
Same model (bench/sampling.py's 1000-class DiT + VAE: DiTPipeline hard-codes the null label 1000),
steps, guidance (DDIM eta 0, CFG) and batch on both sides; the pipeline returns float arrays and
does nothing else. rgsyn writes one shard of batch * batches images; its CPU-side work for batch k
overlaps the sampling of batch k+1 (rgsyn/synth/engine.py). The encoder is an untrained test_resnet
at the params' re-id size and the memory bank random unit features (2 per identity): their values do
not change the work. Sides alternate and the medians are compared (see bench/sampling.py).
Last line: `ratio: synthesis_vs_pipeline=<x>` (images/s of rgsyn over the pipeline's; target >= 1).
"""
import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from diffusers import DiTPipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sampling import build, timed_pair  # noqa: E402

from rgsyn.config import load_params  # noqa: E402
from rgsyn.encoder import EncoderConfig, IdentityEncoder  # noqa: E402
from rgsyn.generator.dit import DiTBundle  # noqa: E402
from rgsyn.synth.audit import impostor_stats  # noqa: E402
from rgsyn.synth.engine import Synthesizer  # noqa: E402
from rgsyn.synth.run import sample_seeds  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=4, help="batches per shard")
    ap.add_argument("--per-id", type=int, default=4)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--sample-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    n = a.batch * a.batches
    if n % a.per_id:
        raise SystemExit("--batch * --batches must be a multiple of --per-id (whole identities per shard)")
    p = load_params()
    sp = dataclasses.replace(p.synth, per_id=a.per_id, batch=a.batch, sample_steps=a.steps, guidance=a.guidance,
                             device="cpu")
    dit, vae, sched = build(a.sample_size)
    pipe = DiTPipeline(transformer=dit, vae=vae, scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    bundle = DiTBundle(dit, sched, vae, 1)
    t = p.reference.train
    torch.manual_seed(0)
    encoder = IdentityEncoder(EncoderConfig(t.backbone, 1000, t.embed_dim, t.height, t.width)).eval()
    bank_pids = torch.arange(1000).repeat_interleave(2)
    bank = torch.nn.functional.normalize(torch.randn(len(bank_pids), encoder.dim), dim=1)
    threshold = impostor_stats(bank, bank_pids, sp.fmr)["threshold"]  # once per run (the plan), not timed
    synth = Synthesizer(bundle, list(range(1000)), encoder, bank, bank_pids, sp, p.rl)
    classes = list(range(n // a.per_id))
    seeds = sample_seeds(0, n)
    labels = torch.tensor(classes).repeat_interleave(a.per_id).tolist()
    tmp = tempfile.TemporaryDirectory()
    out = Path(tmp.name) / "shard-00000.parquet"

    def ours():
        synth.write(classes, seeds, threshold, out, {"bench": True}, "bench", "bench")

    def theirs():
        with torch.inference_mode():
            return [pipe(class_labels=labels[i:i + a.batch], guidance_scale=a.guidance, num_inference_steps=a.steps,
                         generator=torch.Generator().manual_seed(i), output_type="np").images
                    for i in range(0, n, a.batch)]

    t_ours, t_pipe = timed_pair(ours, theirs, a.repeats)
    assert len(np.concatenate(theirs())) == n
    head = "| side | steps | batch | images | guidance | images/s |"
    print(head + "\n" + "| --- " * 6 + "|")
    print(f"| rgsyn synthesis (features, audit, rewards, PNG, Parquet) | {a.steps} | {a.batch} | {n} | {a.guidance} "
          f"| {n / t_ours:.2f} |")
    print(f"| diffusers DiTPipeline (images only) | {a.steps} | {a.batch} | {n} | {a.guidance} | {n / t_pipe:.2f} |")
    tmp.cleanup()
    print(f"ratio: synthesis_vs_pipeline={t_pipe / t_ours:.3f}")


if __name__ == "__main__":
    main()
