"""Two CPU settings of the default, measured side by side in one run (ratios, not absolute times):

- `compute.channels_last`: one training iteration (forward + backward, batch p·k) of the recognition
  model at the params' size, contiguous (NCHW) against channels-last memory, at 1 and 2 threads;
- `rl.eval_batch`: milliseconds per sample of the shipping sampler (the cold-start generator, guidance,
  `sampler.steps`) drawing images without gradient, at several samples per call.

Each setting alternates its variants `--repeats` times and reports the median, so a load change on a
shared machine hits both.

python bench/cpu_speed.py [--params params.yaml] [--threads 1 2] [--batches 16 32 64 128] [--repeats 3]
"""
import argparse
import dataclasses
import statistics
import time

import torch

from rgsyn.config import load_params


def train_iteration_ms(p, channels_last: bool, iters: int = 10) -> float:
    from rgsyn.devices import prepare_model
    from rgsyn.encoder import _backbone

    cfg = p.reference.train
    compute = dataclasses.replace(p.compute, channels_last=channels_last, compile="")  # the trainers' own switch
    model = prepare_model(_backbone(cfg.backbone, cfg.height, cfg.width), compute, "cpu")
    x = torch.randn(cfg.p * cfg.k, 3, cfg.height, cfg.width)
    for _ in range(2):  # warm-up: oneDNN picks its kernels on the first calls
        model(x).float().sum().backward()
    t0 = time.perf_counter()
    for _ in range(iters):
        model(x).float().sum().backward()
    return 1000 * (time.perf_counter() - t0) / iters


def sampler_ms(sampler, classes: int, n: int, batch: int) -> float:
    from rgsyn.generator.sampler import per_sample_seeds

    labels = torch.arange(n) % classes
    t0 = time.perf_counter()
    sampler.images(labels, per_sample_seeds(777, n), batch)
    return 1000 * (time.perf_counter() - t0) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    p = load_params(a.params)

    print(f"\n{a.params}: one training iteration of {p.reference.train.backbone} "
          f"({p.reference.train.p * p.reference.train.k} images at {p.reference.train.height}x{p.reference.train.width})\n")
    print("| threads | NCHW (ms) | channels-last (ms) | speed-up |")
    print("| --- | --- | --- | --- |")
    for th in a.threads:
        torch.set_num_threads(th)
        runs = {False: [], True: []}
        for _ in range(a.repeats):
            for cl in (False, True):
                runs[cl].append(train_iteration_ms(p, cl))
        base, cl = statistics.median(runs[False]), statistics.median(runs[True])
        print(f"| {th} | {base:.1f} | {cl:.1f} | {base / cl:.2f}x |")

    from rgsyn.generator.coldstart import load_coldstart
    from rgsyn.generator.sampler import Sampler

    bundle, pids = load_coldstart(p.rl.coldstart)
    bundle.transformer.eval()
    sampler = Sampler.from_params(bundle, p.sampler, p.compute.precision)
    torch.set_num_threads(max(a.threads))
    print(f"\nthe sampler ({p.sampler.steps} steps, guidance {p.sampler.guidance}), {a.samples} samples, "
          f"{max(a.threads)} threads\n")
    print("| samples per call | ms / sample | vs the largest |")
    print("| --- | --- | --- |")
    runs = {b: [] for b in a.batches}
    with torch.no_grad():
        for _ in range(a.repeats):
            for b in a.batches:
                runs[b].append(sampler_ms(sampler, len(pids), a.samples, b))
    ref = statistics.median(runs[max(a.batches)])
    for b in a.batches:
        m = statistics.median(runs[b])
        print(f"| {b} | {m:.1f} | {ref / m:.2f}x |")


if __name__ == "__main__":
    main()
