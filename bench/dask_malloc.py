"""Why rgsyn's Dask workers drop Dask's MALLOC_TRIM_THRESHOLD_=65536: the same short torch training
in a single-threaded Dask worker process started with Dask's default environment and with the key
removed (flows.common.dask_runner's setting), sides alternating, medians.

python bench/dask_malloc.py [--repeats 3] [--epochs 12]
Last line: `ratio: trim_vs_default=<x>` (x > 1: eager trimming is slower).
"""
import argparse
import time

import numpy as np


def train(epochs: int) -> float:
    import dataclasses

    import torch

    from rgsyn.config import load_params
    from rgsyn.downstream.losses import trainer_losses
    from rgsyn.downstream.trainer import fit
    from rgsyn.encoder import EncoderConfig, IdentityEncoder

    torch.set_num_threads(1)
    c = dataclasses.replace(load_params().downstream.train, epochs=epochs, iters_per_epoch=9)
    torch.manual_seed(0)
    model = IdentityEncoder(EncoderConfig(c.backbone, 150, c.embed_dim, c.height, c.width))
    images = torch.randint(0, 255, (600, 3, c.height, c.width), dtype=torch.uint8)
    labels = np.repeat(np.arange(150), 4)
    opt = torch.optim.Adam(model.parameters(), lr=c.lr)
    t0 = time.perf_counter()
    fit(model, opt, images, labels, c, 0, trainer_losses(c)[0], progress=False)
    return time.perf_counter() - t0


def main():
    import dask
    from distributed import Client, LocalCluster

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=12)
    a = ap.parse_args()
    times = {"Dask default (MALLOC_TRIM_THRESHOLD_=65536)": [], "key removed (rgsyn)": []}
    for _ in range(a.repeats):
        for name in times:
            with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
                                 if "removed" in name else {}):
                with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
                        Client(cl) as client:
                    times[name].append(client.submit(train, a.epochs, pure=False).result())
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"| worker environment | seconds ({a.epochs} epochs, median of {a.repeats}) |\n| --- | --- |")
    for k, v in med.items():
        print(f"| {k} | {v:.1f} |")
    a_, b_ = med.values()
    print(f"ratio: trim_vs_default={a_ / b_:.3f}")


if __name__ == "__main__":
    main()
