"""What dynamic sample selection (paper §4.3, eq. 12) costs per step, and what its fast mode keeps.

python bench/selection.py [--batches 16] [--repeats 5] [--scopes head,layer4,all] [--random]

With no arguments it measures at the trainer's own composition (params.yaml downstream: the real P×K
batch plus the synthetic candidates that `downstream.mix.share` adds, keep ratio
`downstream.selection.ratio`), on the default run's model (`downstream.out_dir`), its loss and
optimiser, and the shard rows it trains on (`downstream.mix.synthetic`, accepted-only or every sample
per `downstream.mix.accepted_only`) when `make run` has made them, and on random tensors
with some identity signal (a fixed random pattern per identity + noise) otherwise (or with --random).

- time: a plain training step on real + all candidates vs a DSS step, fast (per scope) and exact;
  all sides run alternately, medians.
- agreement with the exact mode on fresh batches at one model state (mean ± s.e. over batches, and
  the minimum): the Spearman correlation of the Δl rankings, and `kept`, the share of the exact mode's
  kept candidates that the fast mode keeps too (chance: k / candidates) — what selection does with the
  ranking.
- what each lookahead keeps (exact mode, the same batches): the identity loss l_id(w) and the
  own-identity top-1 of the kept vs the dropped candidates, for the virtual step on the batch's real
  rows (`real`) and on the whole mixed batch (`mixed`, eq 12 as printed); and the share of candidates,
  and of each mode's kept ones, whose identity is also among the step's real rows.
Last line: `ratio: fast=<x> exact=<y> spearman=<z> kept=<k> shipped=<mode>` (x, y: step time / plain
step time; x, z, k for `downstream.selection.scope`; mode: `downstream.selection.mode`, what the
pipeline trains with). Bound (docs/selection.md) where the fast mode ships: fast ≤ 1.3, kept ≥ 0.85.
"""
import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from rgsyn.config import load_params
from rgsyn.downstream.losses import loss_head, trainer_losses
from rgsyn.downstream.selection import (LOOKAHEADS, delta_fast, dss_step, encoder_split, lookahead,
                                        lookahead_loss, loss_grads, select)
from rgsyn.downstream.trainer import keep_ratio, make_optimizer, n_synthetic_ids
from rgsyn.encoder import EncoderConfig, IdentityEncoder, load_encoder


def agree(v) -> str:
    """'mean ± standard error, min' over batches."""
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
        return real_x, real_y, syn_x, syn_y
    return make


def trainer_source(index, shards, accepted_only, c, g):
    """The trainer's own batches: P ids x K augmented real images + candidates drawn P x K-style (K per
    id) from the shard rows the trainer draws from (the accepted ones, or every sample), labelled with
    their real identity."""
    from rgsyn.data.images import augment, load_images, normalize, resize_images
    from rgsyn.data.layouts import read_index
    from rgsyn.data.records import relabel
    from rgsyn.synth.reader import read_shards

    train = read_index(index).train
    labels, table = relabel([r.pid for r in train])
    labels = torch.from_numpy(labels)
    images = load_images([r.path for r in train], c.height, c.width)  # (N, 3, H, W) uint8
    sh = read_shards(shards, accepted_only=accepted_only)
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
    ap.add_argument("--scopes", default="head,layer4,layer3,all")
    ap.add_argument("--random", action="store_true", help="random tensors even when the default run exists")
    ap.add_argument("--params", default="params.yaml")
    a = ap.parse_args()
    p = load_params(a.params)
    d, c = p.downstream, p.downstream.train
    n_syn = n_synthetic_ids(0.0, d.mix, c.p, 10 ** 6, keep_ratio(d.selection)) * c.k  # the trainer's candidates per step
    ratio, scope, rows = d.selection.ratio, d.selection.scope, d.selection.lookahead
    scopes = list(dict.fromkeys(a.scopes.split(",") + [scope]))
    trained = not a.random and (Path(d.out_dir) / "encoder.json").exists() and Path(d.mix.synthetic).exists()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    if trained:
        model = load_encoder(d.out_dir).train()
        make = trainer_source(p.data.index, d.mix.synthetic, d.mix.accepted_only, c, g)
    else:
        n_cls = 150
        model = IdentityEncoder(EncoderConfig(c.backbone, n_cls, c.embed_dim, c.height, c.width,
                                              head=loss_head(c.loss))).train()
        make = random_source(n_cls, c, g)
    opt = make_optimizer(model, c)
    loss_fn, id_loss = trainer_losses(c)  # the trainer's loss L and l_id (faces: CosFace and its per-sample loss)

    if not trained:  # rank at a trained-ish state, not at the classifier's near-zero init
        for _ in range(20):
            dss_step(model, opt, *make(c.p, c.k, n_syn), ratio=1.0, mode="off", loss_fn=loss_fn, id_loss=id_loss)
    rho = {s: [] for s in scopes}
    kept = {s: [] for s in scopes}
    picks = {r: {"l_kept": [], "l_dropped": [], "top1_kept": [], "top1_dropped": []} for r in LOOKAHEADS}
    seen = {"candidates": [], "exact": [], "fast": []}  # share of candidates whose identity the real rows have
    for _ in range(a.batches):  # fresh batches, one model state
        rx, ry, sx, sy = make(c.p, c.k, n_syn)
        x, y, n = torch.cat([rx, sx]), torch.cat([ry, sy]), len(rx)
        for r in LOOKAHEADS:  # what delta_exact computes, per lookahead
            grads, logits = loss_grads(model, x, y, lookahead_loss(loss_fn, n, r))
            delta = lookahead(model, x, y, n, grads, c.lr, id_loss=id_loss)
            m = torch.zeros(len(delta), dtype=torch.bool)
            m[select(delta, ratio)] = True
            l_id, hit = id_loss(logits[n:], y[n:]).detach(), (logits[n:].argmax(1) == y[n:]).float()
            for key, v in (("l_kept", l_id[m]), ("l_dropped", l_id[~m]), ("top1_kept", hit[m]), ("top1_dropped", hit[~m])):
                picks[r][key].append(v.mean().item())
            if r == rows:
                exact = delta
        keep_exact = set(select(exact, ratio).tolist())
        for s in scopes:
            split = encoder_split(model, s)
            fast = delta_fast(split, split.prefix(x), y, n, c.lr, loss_fn, id_loss=id_loss, rows=rows)
            rho[s].append(float(spearmanr(fast.numpy(), exact.numpy()).statistic))
            kept[s].append(len(keep_exact & set(select(fast, ratio).tolist())) / max(1, len(keep_exact)))
            if s == scope:
                in_real = torch.isin(sy, ry).float()  # (S,)
                seen["candidates"].append(in_real.mean().item())
                seen["exact"].append(in_real[sorted(keep_exact)].mean().item())
                seen["fast"].append(in_real[select(fast, ratio)].mean().item())

    rx, ry, sx, sy = make(c.p, c.k, n_syn)

    def step(mode, s="head"):
        return lambda: dss_step(model, opt, rx, ry, sx, sy, ratio=ratio, mode=mode, loss_fn=loss_fn, scope=s,
                                id_loss=id_loss, lookahead=rows)

    t = timed({"plain": step("off"), "exact": step("exact"), **{f"fast[{s}]": step("fast", s) for s in scopes}},
              a.repeats)
    n_par = {s: sum(q.numel() for q in encoder_split(model, s).suffix.parameters()) for s in scopes}
    rows_of = "accepted rows" if d.mix.accepted_only else "every sample"
    source = f"the default run ({d.out_dir}, {c.loss} loss, {rows_of} of {d.mix.synthetic})" if trained else "random tensors"
    print(f"{source}; {c.backbone} {c.height}x{c.width} embed {c.embed_dim}, {c.p * c.k} real + {n_syn} candidates, "
          f"keep ratio {ratio}, lookahead {rows}, lr {c.lr}, {a.repeats} repeats, {a.batches} batches; torch threads "
          f"{torch.get_num_threads()}")
    chance = len(select(torch.zeros(n_syn), ratio)) / n_syn
    print(f"| step | seconds | vs plain | fast params | Spearman vs exact (mean ± s.e., min) | kept as exact "
          f"(chance {chance:.2f}) |\n| --- | --- | --- | --- | --- | --- |")
    print(f"| plain (real + all candidates) | {t['plain']:.4f} | 1.000 | | | |")
    print(f"| DSS exact | {t['exact']:.4f} | {t['exact'] / t['plain']:.3f} | | 1 | 1 |")
    for s in scopes:
        k = f"fast[{s}]"
        print(f"| DSS fast, scope {s} | {t[k]:.4f} | {t[k] / t['plain']:.3f} | {n_par[s]} | {agree(rho[s])} | "
              f"{agree(kept[s])} |")
    print("\n| lookahead | l_id kept | l_id dropped | own-identity top-1 kept | dropped |\n| --- | --- | --- | --- | --- |")
    for r in LOOKAHEADS:
        print(f"| {r} | " + " | ".join(agree(picks[r][k]).split(",")[0] for k in picks[r]) + " |")
    print(f"\nidentity also in the step's real rows: {np.mean(seen['candidates']):.3f} of the candidates, "
          f"{np.mean(seen['exact']):.3f} of the exact mode's kept, {np.mean(seen['fast']):.3f} of the fast mode's kept")
    print(f"ratio: fast={t[f'fast[{scope}]'] / t['plain']:.3f} exact={t['exact'] / t['plain']:.3f} "
          f"spearman={np.mean(rho[scope]):.3f} kept={np.mean(kept[scope]):.3f} shipped={p.downstream.selection.mode}")


if __name__ == "__main__":
    main()
