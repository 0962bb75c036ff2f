"""What dynamic sample selection (SPEC §7) costs per step, and how well its fast mode ranks.

python bench/selection.py [--repeats 5] [--batches 16] [--ratio 0.5] [--scope head]
                          [--data data/index.parquet [--checkpoint checkpoints/reference]]
                          [--synthetic data/synthetic]
Model: the downstream re-id trainer's encoder (params.yaml downstream.train: backbone, image size,
embed dim, lr, loss), Adam. Batch: 64 real (16 ids x 4) + 32 synthetic candidates (of the same ids
except with --synthetic). Images are random tensors with some identity signal (a fixed random pattern
per id + noise; candidates get noise of 0.5-2x) so that Δl has something to rank; or, with --data,
augmented train images of the embedded set (candidates: other images of the batch ids, half of them
relabelled to a wrong in-batch id, standing in for identity-inconsistent synthetic samples), optionally
from --checkpoint; or, with --synthetic, the trainer's own batches: real P x K + candidates from the
accepted shard rows (their ids drawn independently of the real ones, as the trainer's own synthetic
sampler does).
- time: a plain training step on real + all candidates vs a DSS step, fast (per scope) and exact;
  all sides run alternately, medians.
- rank agreement: Spearman of fast vs exact Δl over the candidates of fresh batches (mean ± standard
  error and min over batches; one batch's Spearman spreads widely, so take ≥ 16 batches), for each
  fast scope, at one model state: after --warmup plain steps (default 20 from random init, none
  from --checkpoint); measured before the timing steps move the model. Next to it, what selection
  does with Δl: the share of the exact mode's kept candidates (--ratio) that the fast mode keeps too
  (chance: k / candidates). Two cheap stand-ins for ∇L(mixed batch) are ranked the same way (rows
  "proxy"): the lookahead along ∇L of the real rows only, and along the previous batch's ∇L (what a
  one-step-late selection would use).
Last line: `ratio: fast=<x> exact=<y> spearman=<z>` (x, y: step time / plain step time; x and z for
--scope).
"""
import argparse
import time

import numpy as np
import torch

from rgsyn.config import load_params
from rgsyn.downstream.losses import reid_loss
from rgsyn.downstream.selection import delta_fast, dss_step, encoder_split, lookahead, loss_grads, select
from rgsyn.downstream.selection import spearman as spearman_ours
from rgsyn.encoder import EncoderConfig, IdentityEncoder, load_encoder

try:
    from scipy.stats import spearmanr

    def spearman(a, b) -> float:
        return float(spearmanr(np.asarray(a), np.asarray(b)).statistic)
except ImportError:  # scipy is a dev extra only
    spearman = spearman_ours


def agree(v) -> str:
    """'mean ± standard error, min' of per-batch Spearman values."""
    se = np.std(v, ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return f"{np.mean(v):.3f} ± {se:.3f}, {np.min(v):.3f}"


def timed(fns: dict, repeats: int) -> dict:
    """Median seconds of each fn, run alternately so machine drift hits all sides alike."""
    for fn in fns.values():
        fn()  # warm-up
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def random_source(n_cls, c, g):
    """Batches of random images: a fixed random pattern per id + noise (candidates: 0.5-2x noise)."""
    protos = torch.randn(n_cls, 3, c.height, c.width, generator=g)

    def make(n_ids, k, n_syn):
        ids = torch.randperm(n_cls, generator=g)[:n_ids]
        real_y = ids.repeat_interleave(k)
        syn_y = ids[torch.randint(0, n_ids, (n_syn,), generator=g)]
        real_x = protos[real_y] + torch.randn(real_y.shape + protos.shape[1:], generator=g)
        noise = 0.5 + 1.5 * torch.rand(n_syn, 1, 1, 1, generator=g)
        syn_x = protos[syn_y] + noise * torch.randn(syn_y.shape + protos.shape[1:], generator=g)
        return real_x, real_y, syn_x, syn_y  # (64, 3, H, W), (64,), (S, 3, H, W), (S,)
    return make


def image_source(index, c, g):
    """Batches of augmented embedded train images; half the candidates carry a wrong in-batch id."""
    from rgsyn.data.images import augment, load_images, normalize
    from rgsyn.data.layouts import read_index
    from rgsyn.data.records import relabel

    train = read_index(index).train
    labels = torch.from_numpy(relabel([r.pid for r in train])[0])
    images = load_images([r.path for r in train], c.height, c.width)  # (N, 3, H, W) uint8
    rows = [torch.nonzero(labels == i).flatten() for i in range(int(labels.max()) + 1)]

    def pick(ids):  # one random image of each id
        return torch.stack([rows[i][torch.randint(0, len(rows[i]), (1,), generator=g)][0] for i in ids.tolist()])

    def make(n_ids, k, n_syn):
        ids = torch.randperm(len(rows), generator=g)[:n_ids]
        real_i = pick(ids.repeat_interleave(k))
        syn_i = pick(ids[torch.randint(0, n_ids, (n_syn,), generator=g)])
        x = augment(normalize(images[torch.cat([real_i, syn_i])]), g, c.flip, c.pad, c.random_erasing)
        syn_y = labels[syn_i].clone()
        syn_y[: n_syn // 2] = ids[torch.randint(0, n_ids, (n_syn // 2,), generator=g)]
        return x[:len(real_i)], labels[real_i], x[len(real_i):], syn_y
    return make


def synthetic_source(index, shards, c, g):
    """The trainer's own batches: 16 real ids x 4 augmented real images + candidates drawn P x K-style
    (4 per id) from the accepted rows of the synthetic shards, labelled with their real identity."""
    from rgsyn.data.images import augment, load_images, normalize, resize_images
    from rgsyn.data.layouts import read_index
    from rgsyn.data.records import relabel
    from rgsyn.synth.reader import read_shards

    train = read_index(index).train
    labels, table = relabel([r.pid for r in train])
    labels = torch.from_numpy(labels)
    images = load_images([r.path for r in train], c.height, c.width)  # (N, 3, H, W) uint8
    sh = read_shards(shards, accepted_only=True)
    syn_images = resize_images(sh.images(), c.height, c.width)
    syn_labels = torch.tensor([table[int(p)] for p in sh.labels])
    rows = [torch.nonzero(labels == i).flatten() for i in range(int(labels.max()) + 1)]
    syn_ids = sorted(set(syn_labels.tolist()))
    syn_rows = {i: torch.nonzero(syn_labels == i).flatten() for i in syn_ids}

    def draw(pool, k):
        return pool[torch.randint(0, len(pool), (k,), generator=g)]

    def make(n_ids, k, n_syn):
        ids = torch.randperm(len(rows), generator=g)[:n_ids]
        real_i = torch.cat([draw(rows[i], k) for i in ids.tolist()])
        sids = [syn_ids[j] for j in torch.randperm(len(syn_ids), generator=g)[: max(1, n_syn // k)].tolist()]
        syn_i = torch.cat([draw(syn_rows[i], k) for i in sids])[:n_syn]
        rx = augment(normalize(images[real_i]), g, c.flip, c.pad, c.random_erasing)
        sx = augment(normalize(syn_images[syn_i]), g, c.flip, c.pad, c.random_erasing)
        return rx, labels[real_i], sx, syn_labels[syn_i]
    return make


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", type=int, default=16)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--scope", default="head", help="fast scope of the ratio line")
    ap.add_argument("--scopes", default="head,layer4,layer3,layer2,layer1,all")
    ap.add_argument("--real-ids", type=int, default=16)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--syn", type=int, default=32)
    ap.add_argument("--data", default="", help="index parquet: real images instead of random tensors")
    ap.add_argument("--synthetic", default="", help="shard folder: candidates = its accepted rows (with --data)")
    ap.add_argument("--checkpoint", default="", help="start from this trained encoder (with --data)")
    ap.add_argument("--warmup", type=int, default=-1, help="plain steps before ranking (-1: 20, 0 with --checkpoint)")
    a = ap.parse_args()
    p = load_params()
    c = p.downstream.train
    scopes = list(dict.fromkeys(a.scopes.split(",") + [a.scope]))
    torch.manual_seed(0)
    n_cls = p.data.embedded.num_train_ids
    if a.checkpoint:
        model = load_encoder(a.checkpoint).train()
        n_cls = model.cfg.num_classes
    else:
        model = IdentityEncoder(EncoderConfig(c.backbone, n_cls, c.embed_dim, c.height, c.width)).train()
    opt = torch.optim.Adam(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)

    def loss_fn(f, lg, y):
        return reid_loss(f, lg, y, c.margin, c.label_smoothing)

    g = torch.Generator().manual_seed(0)
    if a.synthetic:
        make = synthetic_source(a.data or p.data.index, a.synthetic, c, g)
    else:
        make = image_source(a.data, c, g) if a.data else random_source(n_cls, c, g)
    rx, ry, sx, sy = make(a.real_ids, a.k, a.syn)

    def step(mode, scope="head"):
        return lambda: dss_step(model, opt, rx, ry, sx, sy, ratio=a.ratio, mode=mode, loss_fn=loss_fn,
                                scope=scope)

    warmup = a.warmup if a.warmup >= 0 else (0 if a.checkpoint else 20)
    for _ in range(warmup):  # rank agreement at a trained-ish state, not at the classifier's near-zero init
        dss_step(model, opt, *make(a.real_ids, a.k, a.syn), ratio=1.0, mode="off", loss_fn=loss_fn)
    rho = {s: [] for s in scopes}
    kept = {s: [] for s in scopes}  # share of exact's kept candidates that fast keeps too
    proxies = {"∇L of the real rows only": [], "the previous batch's ∇L": []}
    prev = None
    for _ in range(a.batches):  # fresh batches, one model state
        rx2, ry2, sx2, sy2 = make(a.real_ids, a.k, a.syn)
        x, y, n = torch.cat([rx2, sx2]), torch.cat([ry2, sy2]), len(rx2)
        grads = loss_grads(model, x, y, loss_fn)[0]  # ∇L(mixed batch), kept for the next batch's proxy
        exact = lookahead(model, x, y, n, grads, c.lr)  # what delta_exact computes
        keep_exact = set(select(exact, a.ratio).tolist())
        for s in scopes:
            split = encoder_split(model, s)
            fast = delta_fast(split, split.prefix(x), y, n, c.lr, loss_fn)
            rho[s].append(spearman(fast, exact))
            kept[s].append(len(keep_exact & set(select(fast, a.ratio).tolist())) / max(1, len(keep_exact)))
        real_only = lookahead(model, x, y, n, loss_grads(model, rx2, ry2, loss_fn)[0], c.lr)
        proxies["∇L of the real rows only"].append(spearman(real_only, exact))
        if prev is not None:
            proxies["the previous batch's ∇L"].append(spearman(lookahead(model, x, y, n, prev, c.lr), exact))
        prev = grads

    sides = {"plain": step("off"), "exact": step("exact"), **{f"fast[{s}]": step("fast", s) for s in scopes}}
    t = timed(sides, a.repeats)

    n_par = {s: sum(q.numel() for q in encoder_split(model, s).suffix.parameters()) for s in scopes}
    source = (f"real + synthetic ({a.synthetic}) images" if a.synthetic else
              f"images {a.data}" if a.data else "random tensors")
    print(f"{source}, {a.checkpoint or 'random init'}; "
          f"{c.backbone} {c.height}x{c.width} embed {c.embed_dim}, {a.real_ids * a.k} real + {a.syn} "
          f"candidates, keep ratio {a.ratio}, lr {c.lr}, {a.repeats} repeats, {a.batches} batches after "
          f"{warmup} steps; torch threads {torch.get_num_threads()}")
    print("| step | seconds | vs plain | fast params | Spearman vs exact (mean ± s.e., min) | kept as exact "
          f"(chance {len(select(torch.zeros(a.syn), a.ratio)) / a.syn:.2f}) |\n| --- | --- | --- | --- | --- | --- |")
    print(f"| plain (real + all candidates) | {t['plain']:.4f} | 1.000 | | | |")
    print(f"| DSS exact | {t['exact']:.4f} | {t['exact'] / t['plain']:.3f} | | 1 | 1 |")
    for s in scopes:
        k = f"fast[{s}]"
        print(f"| DSS fast, scope {s} | {t[k]:.4f} | {t[k] / t['plain']:.3f} | {n_par[s]} | "
              f"{agree(rho[s])} | {agree(kept[s])} |")
    for k, v in proxies.items():
        if v:
            print(f"| proxy: lookahead along {k} | | | | {agree(v)} | |")
    print(f"ratio: fast={t[f'fast[{a.scope}]'] / t['plain']:.3f} exact={t['exact'] / t['plain']:.3f} "
          f"spearman={np.mean(rho[a.scope]):.3f}")


if __name__ == "__main__":
    main()
