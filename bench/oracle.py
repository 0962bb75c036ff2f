"""The ceiling of synthetic augmentation, where the truth is known: what the renderer's own images of the
train identities add over real only, beside what the release adds, on the same trainer, share and seeds.

The embedded sets are rendered, so the renderer is a perfect generator (rgsyn.data.procedural.truth).
Rows, each trained with the ladder's `train_row` with selection off, so the synthetic rows alone differ:

    real_only         real images only
    release           real + the pipeline's release (synth.out_dir; downstream.mix.accepted_only as in params)
    renderer          real + synth.per_id renders of every train identity, at the trainer's size
    renderer_lowres   the same renders stored at the generator's size (prior.height x prior.width) and
                      upsampled by the trainer like the release (not for faces: their generator draws at
                      the trainer's size)
    gen:NAME          real + a generator's own samples (`--generator NAME:DIR`, a cold-start or RL folder),
                      synth.per_id of every train identity with the shipping sampler, unaudited: what a
                      candidate generator teaches before the release's filters; `--sampler NAME=S:E:G` draws
                      that row with S steps, eta E and guidance G instead (one folder may appear under
                      several names, one sampler each)
    swap:Q            the renderer's images at the generator's size (faces: the trainer's) with a share Q of
                      their labels moved to another train identity (`--swap Q`; selection_truth.swap_labels):
                      what label noise alone costs, to read a generator's CAS against
    like:NAME         the renderer's images at the generator's size (faces: the trainer's) with the per-identity
                      counts of the accepted rows of a shards folder (`--like NAME:DIR`): perfect images in
                      exactly the release's slots, so the release's own row reads its images apart from
                      which identities it covers and how many samples each has
    shards:NAME       real + the accepted rows of another shards folder (`--shards NAME:DIR`), mixed as the release

per starting point (`--start name:path`, "" = random init; default `pretrained:` the params' pretrained
path or, where it is empty, the auditor's backbone, and `random:`). The figure every generator change is
judged by is the **captured share** (release − real only) / (renderer − real only), with Fieller's 95 %
interval over seeds (rgsyn.stats.paired_ratio).

    python bench/oracle.py [--params params.yaml] [--seeds 0 .. 9] [--workers 2] [--start pretrained:models/auditor]
        [--json docs/oracle-reid.json] [--generator lora:checkpoints/cs-lora] [--rows real_only renderer]
        [--generator g15:checkpoints/coldstart --sampler g15=5:1:1.5] [--like release:data/synthetic]
    python bench/oracle.py --fidelity 16     # what a perfect generator scores on the fidelity figures

It prints the markdown table and writes every per-seed metric into --json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from rgsyn import stats
from rgsyn.config import load_params
from rgsyn.identity import audit_features

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selection_truth import swap_labels  # noqa: E402  (bench/selection_truth.py)

ROWS = ("real_only", "release", "renderer", "renderer_lowres")
# prefixes of the rows named at the command line, read against the renderer rows
CANDIDATES = ("gen:", "swap:", "like:", "shards:")


def renderer_like(base, counts: dict) -> "Synthetic":
    """The first counts[pid] of `base`'s images of each pid (base: renderer images, identity by identity)."""
    from rgsyn.downstream.trainer import Synthetic

    have = Counter(base.pids)
    short = sorted(q for q, n in counts.items() if n > have[q])
    if short:
        raise ValueError(f"--like: identity {short[0]} has {counts[short[0]]} accepted rows, more than the "
                         f"{have[short[0]]} renderer images drawn of it (synth.per_id)")
    seen, keep = Counter(), []
    for i, q in enumerate(base.pids):
        if seen[q] < counts.get(q, 0):
            seen[q] += 1
            keep.append(i)
    return Synthetic(base.images[keep], [base.pids[i] for i in keep])


def synthetic_rows(params_path: str, swaps: tuple[float, ...] = (), likes: dict | None = None) -> dict:
    """row -> downstream.trainer.Synthetic for the renderer rows, swap:Q rows and like:NAME rows (`likes`:
    NAME -> shards folder), (release shards folder) for the release."""
    from rgsyn.data.images import resize_images
    from rgsyn.data.layouts import read_index
    from rgsyn.data.procedural.truth import truth_images
    from rgsyn.downstream.trainer import Synthetic
    from rgsyn.synth.reader import read_shards

    p = load_params(params_path)
    if not Path(p.synth.out_dir).exists():
        raise FileNotFoundError(f"{p.synth.out_dir}: the release is missing; run `dvc repro synthesize` first")
    pids = sorted({r.pid for r in read_index(p.data.index).train})
    imgs, labels = truth_images(p.data, pids, p.synth.per_id, salt=0)
    out = {"release": p.synth.out_dir, "renderer": Synthetic(imgs, labels)}
    if tuple(imgs.shape[-2:]) != (p.prior.height, p.prior.width):  # faces: the generator draws at the trainer's size
        out["renderer_lowres"] = Synthetic(resize_images(imgs, p.prior.height, p.prior.width), labels)
    base = out.get("renderer_lowres", out["renderer"])  # what a generator's samples look like to the trainer
    for q in swaps:
        noisy, _ = swap_labels(base.pids, q, np.random.default_rng([int(round(1000 * q)), 41]))
        out[f"swap:{q:g}"] = Synthetic(base.images, noisy)
    for name, folder in (likes or {}).items():
        counts = Counter(read_shards(folder, accepted_only=True).labels.tolist())
        out[f"like:{name}"] = renderer_like(base, counts)
    return out


def sampler_for(sp, spec: str):
    """params `sampler` with steps:eta:guidance from `spec` ("" = unchanged)."""
    if not spec:
        return sp
    try:
        steps, eta, guidance = spec.split(":")
        return dataclasses.replace(sp, steps=int(steps), eta=float(eta), guidance=float(guidance))
    except ValueError as e:
        raise SystemExit(f"--sampler {spec!r}: expected NAME=steps:eta:guidance, e.g. g15=5:1:1.5 ({e})") from None


def generator_rows(params_path: str, generators: dict[str, str], samplers: dict[str, str] | None = None
                   ) -> tuple[dict, dict]:
    """gen:NAME -> Synthetic: synth.per_id samples of every train identity from each generator folder, with
    the shipping sampler (params `sampler`; samplers[NAME] = "steps:eta:guidance" instead) and one noise
    stream per sample (seeds from synth.seed); and gen:NAME -> the fidelity figures of those samples
    against the renderer (rgsyn.eval.fidelity)."""
    import torch

    from rgsyn.downstream.trainer import Synthetic
    from rgsyn.eval.fidelity import generator_fidelity
    from rgsyn.generator.coldstart import generate
    from rgsyn.synth.run import load_generator

    p = load_params(params_path)
    out, samples, all_pids = {}, {}, set()
    for name, path in generators.items():
        bundle, pids = load_generator(path)
        labels = torch.arange(len(pids)).repeat_interleave(p.synth.per_id)
        t0 = time.time()
        sp = sampler_for(p.sampler, (samplers or {}).get(name, ""))
        imgs = generate(bundle, labels, sp, p.synth.seed, p.compute.precision)
        print(f"gen:{name}: {len(imgs)} samples from {path} ({sp.steps} steps, eta {sp.eta}, guidance {sp.guidance}) "
              f"in {time.time() - t0:.0f} s")
        out[f"gen:{name}"] = Synthetic(imgs, [pids[i] for i in labels.tolist()])
        samples[f"gen:{name}"] = (imgs, labels.numpy())
        all_pids.add(tuple(pids))
    if not samples:
        return out, {}
    if len(all_pids) > 1:
        raise ValueError(f"--generator folders {sorted(generators.values())} hold different identities; "
                         "compare generators of one dataset")
    # one reference set and one feature pass for every generator: the figures read each set apart
    fid = generator_fidelity(audit_features(p), p, list(all_pids.pop()), samples)
    for name in samples:
        print(f"{name}: " + ", ".join(f"{k} {fid[name][k]:.3f}" for k in ("precision", "recall", "kernel_distance", "cas")))
    return out, {name: fid[name] for name in samples}


def one(job):
    params_path, row, seed, source, start = job
    import torch

    from rgsyn.ablation import train_row

    torch.set_num_threads(1)
    t0 = time.time()
    extra = {"downstream.selection.mode": "off", "downstream.train.pretrained_path": start}
    if row == "real_only":
        m = train_row(params_path, "real_only", seed, None, extra=extra)
    elif isinstance(source, str):  # the release, or shards:NAME: a shards folder
        m = train_row(params_path, "full", seed, source, extra=extra)
    else:
        m = train_row(params_path, "full", seed, "", extra=extra, synthetic=source)
    return {**m, "row": row, "seconds": time.time() - t0}


def summarize(res: list[dict], metric: str) -> dict:
    """Per row: mean, std and the paired difference to real only; the captured share of the release and
    of each generator row, over each renderer row."""
    rows = [r for r in ROWS if any(m["row"] == r for m in res)] + sorted({m["row"] for m in res
                                                                          if m["row"].startswith(CANDIDATES)})
    by = {r: np.array([m[metric] for m in sorted((m for m in res if m["row"] == r), key=lambda m: m["seed"])])
          for r in rows}
    out = {"rows": {}, "captured_share": {}}
    for r in rows:
        out["rows"][r] = {"mean": float(by[r].mean()), "std": float(by[r].std(ddof=1)),
                          **({"vs_real_only": stats.paired_t(by["real_only"], by[r])} if r != "real_only" else {})}
    for truth in (r for r in ("renderer", "renderer_lowres") if r in by):
        for cand in (r for r in rows if r == "release" or r.startswith(CANDIDATES)):
            key = truth if cand == "release" else f"{cand} / {truth}"  # the release's keeps its name
            out["captured_share"][key] = stats.paired_ratio(by["real_only"], by[cand], by[truth])
    return out


def table(summary: dict, metric: str) -> str:
    lines = [f"| start | row | {metric} (mean ± std) | − real only [95 % t-interval] |", "| --- | --- | --- | --- |"]
    for start, s in summary.items():
        for r, v in s["rows"].items():
            d = v.get("vs_real_only")
            diff = f"{100 * d['mean']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]" if d else ""
            lines.append(f"| {start} | {r} | {100 * v['mean']:.1f} ± {100 * v['std']:.1f} | {diff} |")
    lines += ["", "| start | captured share of | ratio [95 % Fieller interval] |", "| --- | --- | --- |"]
    for start, s in summary.items():
        for truth, c in s["captured_share"].items():
            lines.append(f"| {start} | {truth} | {c['ratio']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}] |")
    return "\n".join(lines)


def fidelity_ceiling(params_path: str, per_id: int) -> dict:
    """What a perfect generator scores on the fidelity figures (rgsyn.eval.fidelity): `per_id` renderer
    images per identity (salt 0), and the same through the generator's size, against the reference set
    (salt 1), read by the audit's encoder."""
    from rgsyn.data.layouts import read_index
    from rgsyn.data.procedural.truth import truth_images
    from rgsyn.eval.fidelity import generator_fidelity

    p = load_params(params_path)
    pids = sorted({r.pid for r in read_index(p.data.index).train})
    imgs, labels = truth_images(p.data, pids, per_id, salt=0)
    cls = {q: i for i, q in enumerate(pids)}
    judge = audit_features(p)
    y = np.array([cls[q] for q in labels])
    sets = {"renderer": (imgs, y)}
    if tuple(imgs.shape[-2:]) != (p.prior.height, p.prior.width):  # through the generator's size, as in the oracle
        from rgsyn.data.images import resize_images

        sets["renderer_lowres"] = (resize_images(imgs, p.prior.height, p.prior.width), y)
    return generator_fidelity(judge, p, pids, sets)


def default_starts(params_path: str) -> list[str]:
    p = load_params(params_path)
    return [f"pretrained:{p.downstream.train.pretrained_path or p.auditor.out_dir}", "random:"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--start", action="append", default=None, help="name:path of the trainers' starting weights")
    ap.add_argument("--json", default="", help="where the per-seed metrics and the summary go")
    ap.add_argument("--generator", action="append", default=[], help="NAME:DIR of a cold-start or RL folder: "
                                                                     "a row of its own unaudited samples")
    ap.add_argument("--sampler", action="append", default=[], help="NAME=steps:eta:guidance: the sampler of "
                                                                   "--generator NAME's row (default: params)")
    ap.add_argument("--swap", type=float, nargs="+", default=[], help="swap:Q rows: the renderer's images with "
                                                                       "a share Q of labels swapped")
    ap.add_argument("--like", action="append", default=[], help="NAME:DIR: a like:NAME row, renderer images with the "
                                                                  "per-identity counts of DIR's accepted rows")
    ap.add_argument("--shards", action="append", default=[],
                    help="NAME:DIR: a shards:NAME row, real + DIR's accepted rows")
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS, help="which of the fixed rows to train")
    ap.add_argument("--fidelity", type=int, default=0, help="only print the fidelity figures of N renderer images "
                                                            "per identity (a perfect generator's) and exit")
    a = ap.parse_args(argv)
    if a.fidelity:
        out = fidelity_ceiling(a.params, a.fidelity)
        print(json.dumps(out, indent=1))
        return out
    starts = dict(s.split(":", 1) for s in (a.start or default_starts(a.params)))
    likes = dict(x.split(":", 1) for x in a.like)
    sources = synthetic_rows(a.params, tuple(a.swap), likes) if set(a.rows) - {"real_only"} or a.swap or likes else {}
    sources.update({f"shards:{n}": d for n, d in (x.split(":", 1) for x in a.shards)})
    samplers = dict(x.split("=", 1) for x in a.sampler)
    unknown = set(samplers) - {g.split(":", 1)[0] for g in a.generator}
    if unknown:
        raise SystemExit(f"--sampler {sorted(unknown)}: no --generator of that name")
    gens, fidelity = generator_rows(a.params, dict(g.split(":", 1) for g in a.generator), samplers)
    sources.update(gens)
    rows = ([r for r in ROWS if r in a.rows and (r == "real_only" or r in sources)]
            + [r for r in sources if r.startswith(CANDIDATES)])
    jobs = [(a.params, r, s, sources.get(r), path) for path in starts.values() for r in rows for s in a.seeds]
    t0 = time.time()
    # spawned, not forked: the generator rows ran torch's thread pool in this process, and a forked
    # child that inherits it can hang in its first parallel op
    with ProcessPoolExecutor(a.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        res = list(pool.map(one, jobs))
    metric = "avg_acc" if "avg_acc" in res[0] else "mAP"
    per_start = {name: [m for m, j in zip(res, jobs) if j[4] == path] for name, path in starts.items()}
    summary = {name: summarize(ms, metric) for name, ms in per_start.items()}
    print(f"\n{a.params}, seeds {a.seeds}, {time.time() - t0:.0f} s\n\n{table(summary, metric)}")
    if a.json:
        strip = lambda m: {k: v for k, v in m.items() if isinstance(v, (int, float, str))}  # noqa: E731
        Path(a.json).write_text(json.dumps({"params": a.params, "seeds": a.seeds, "metric": metric, "starts": starts,
                                            "summary": summary, "fidelity": fidelity, "seconds": time.time() - t0,
                                            "per_seed": {n: [strip(m) for m in ms] for n, ms in per_start.items()}},
                                           indent=1))
    return summary


if __name__ == "__main__":
    main()
