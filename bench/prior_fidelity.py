"""How good a prior is, judged where its settings may be chosen: on general-domain identities, never the target.

Per prior folder and sampler setting, the fidelity figures (rgsyn.eval.fidelity: per-identity precision,
recall, kernel distance, CAS; read by the audit's encoder) against new renders no model trained on:

    own        the prior's samples of its own training classes 0 .. ids - 1: what its label pathway learned
    few_shot   a cold start (params `coldstart`: the table alone by default) on `ids` general-domain identities
               the prior never saw (the classes after its num_classes), `shots` captures each as a target
               identity has, then its samples of them: what a cold start on new identities can reach

    python bench/prior_fidelity.py [--params params.yaml] [--prior models/prior ...] [--ids 100] [--shots 6]
        [--per-id 4] [--sampler 5:1:3 20:1:3] [--json FILE]

--sampler takes steps:eta:guidance (the params' spacing); the default is the shipping sampler alone.
A learning curve: `--train-more 4500 --every 1500` continues the first prior's training on its own
general-domain set (prior params: batch, lr, warmup, EMA; a fresh optimiser, resumable from
`--work`/state) and measures the EMA weights every `--every` steps, each saved as `--work`/prior+N.
A prior still training: `--checkpoint checkpoints/prior` measures the EMA weights of its latest
checkpoint (prior.ckpt_dir of `python -m flows.prior`), exported as `--work`/ckpt+STEP, without stopping it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from rgsyn.config import load_params
from rgsyn.data.images import resize_images
from rgsyn.eval.fidelity import PRIOR_TRUTH_FIRST, REFERENCE_PER_ID, generator_fidelity
from rgsyn.generator.coldstart import adapt, generate, image_size, new_identities
from rgsyn.generator.dit import load_dit
from rgsyn.generator.prior import general_domain
from rgsyn.identity import audit_features

FIGURES = ("precision", "recall", "kernel_distance", "cas")


def renders(p, classes: range, per_class: int, first: int) -> tuple[torch.Tensor, np.ndarray]:
    """Captures first .. first + per_class - 1 of general-domain classes `classes` -> (uint8, class indices
    0 .. len(classes) - 1)."""
    imgs, labels = general_domain(p, classes.stop, per_class, p.prior.seed, progress=False, first=first)
    keep = labels >= classes.start
    return imgs[keep], (labels[keep] - classes.start).numpy()


def measure(p, prior: str, ids: int, shots: int, per_id: int, samplers: list) -> dict:
    judge, out = audit_features(p), {"prior": prior, "ids": ids, "shots": shots, "per_id": per_id, "rows": []}
    labels = torch.arange(ids).repeat_interleave(per_id)
    n = p.prior.num_classes
    refs = {"own": renders(p, range(ids), REFERENCE_PER_ID, PRIOR_TRUTH_FIRST),
            "few_shot": renders(p, range(n, n + ids), REFERENCE_PER_ID, PRIOR_TRUTH_FIRST)}
    own = load_dit(prior)
    few = load_dit(prior)
    h, w = image_size(few)
    shot_imgs, shot_cls = renders(p, range(n, n + ids), shots, 0)
    new_identities(few, ids, p.coldstart)
    out["few_shot_train_seconds"] = adapt(few, resize_images(shot_imgs, h, w), torch.from_numpy(shot_cls), p.coldstart,
                                          "cpu", p.compute.precision, progress=False)
    for steps, eta, guidance in samplers:
        sp = dataclasses.replace(p.sampler, steps=steps, eta=eta, guidance=guidance)
        for name, bundle in (("own", own), ("few_shot", few)):
            t0 = time.time()
            imgs = generate(bundle, labels, sp, p.coldstart.eval_seed, p.compute.precision)
            ref_imgs, ref_cls = refs[name]
            f = generator_fidelity(judge, p, list(range(ids)), {"s": (imgs, labels.numpy())},
                                   reference=lambda hh, ww: (resize_images(ref_imgs, hh, ww), ref_cls, "renderer"))["s"]
            row = {"set": name, "steps": steps, "eta": eta, "guidance": guidance, **{k: f[k] for k in FIGURES},
                   "cas_chance": f["cas_chance"], "seconds": time.time() - t0}
            out["rows"].append(row)
            print(f"{prior} {name:8s} {steps:3d}:{eta:g}:{guidance:g}  " + "  ".join(f"{k} {row[k]:.3f}" for k in FIGURES), flush=True)
    return out


def train_more(p, prior: str, steps: int, every: int, work: str, measure_at) -> None:
    """Continue `prior`'s training for `steps`, calling measure_at(folder) on the EMA weights every `every`."""
    from pathlib import Path

    from rgsyn.config import to_dict
    from rgsyn.generator.dit import save_dit, tie_block_embeddings
    from rgsyn.generator.train import train_denoiser, trainable

    q = p.prior
    images, labels = general_domain(p, q.num_classes, q.per_class, q.seed, progress=False)
    images = resize_images(images, q.height, q.width)
    bundle = load_dit(prior)
    tie_block_embeddings(bundle.transformer)  # as the prior trained: one embedder for every block
    bundle.transformer.requires_grad_(True)
    for done in range(every, steps + 1, every):
        ema = train_denoiser(bundle, images, labels, steps=done, batch=q.batch, lr=q.lr, weight_decay=q.weight_decay,
                             warmup=q.warmup, ema_decay=q.ema_decay, label_dropout=q.label_dropout, seed=q.seed,
                             flip=True, ckpt_dir=Path(work) / "state", ckpt_every=250,
                             config={"continue": prior, **to_dict(q)}, progress=False)
        live = {n: v.detach().clone() for n, v in trainable(bundle.transformer).items()}
        ema.copy_to(trainable(bundle.transformer).values())
        folder = save_dit(bundle, Path(work) / f"prior+{done}", continued_from=prior, steps_more=done)
        with torch.no_grad():  # the live weights back (the next round resumes from the checkpoint anyway)
            for n, v in trainable(bundle.transformer).items():
                v.copy_(live[n])
        measure_at(str(folder))


def export_checkpoint(p, ckpt: str, work: str) -> str:
    """The EMA weights of a `flows.prior` training checkpoint as a DiT folder `work`/ckpt+STEP (load_dit's layout)."""
    from pathlib import Path

    from safetensors.torch import load_file

    from rgsyn.generator.dit import save_dit
    from rgsyn.generator.prior import build_prior
    from rgsyn.generator.train import trainable

    meta = json.loads((Path(ckpt) / "checkpoint.json").read_text())
    bundle = build_prior(p.prior)
    shadow = load_file(str(Path(ckpt) / "ema.safetensors"))
    params = trainable(bundle.transformer)
    if set(shadow) != set(params):
        raise SystemExit(f"--checkpoint {ckpt}: its tensors are not params.yaml's prior (prior.model); "
                         "measure it with the params file it was trained with")
    with torch.no_grad():
        for k, v in params.items():
            v.copy_(shadow[k])
    return str(save_dit(bundle, Path(work) / f"ckpt+{meta['step']}", trained_steps=meta["step"], exported_from=ckpt))


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prior", nargs="+", default=None, help="prior folders (default: prior.out_dir)")
    ap.add_argument("--ids", type=int, default=100)
    ap.add_argument("--shots", type=int, default=6, help="captures per held-out identity the cold start learns from")
    ap.add_argument("--per-id", type=int, default=4, help="samples per identity measured")
    ap.add_argument("--sampler", nargs="+", default=None, help="steps:eta:guidance settings")
    ap.add_argument("--json", default="")
    ap.add_argument("--train-more", type=int, default=0, help="continue the first prior's training this many steps")
    ap.add_argument("--every", type=int, default=1500, help="measure every this many of those steps")
    ap.add_argument("--work", default="checkpoints/prior-more")
    ap.add_argument("--checkpoint", default="", help="a prior training checkpoint folder: measure its EMA weights")
    a = ap.parse_args(argv)
    p = load_params(a.params)
    samplers = ([tuple(float(x) for x in s.split(":")) for s in a.sampler] if a.sampler
                else [(p.sampler.steps, p.sampler.eta, p.sampler.guidance)])
    samplers = [(int(s), e, g) for s, e, g in samplers]
    priors = list(a.prior or []) + ([export_checkpoint(p, a.checkpoint, a.work)] if a.checkpoint else [])
    priors = priors or [p.prior.out_dir]
    res = [measure(p, prior, a.ids, a.shots, a.per_id, samplers) for prior in priors]
    if a.train_more:
        train_more(p, priors[0], a.train_more, a.every, a.work,
                   lambda folder: res.append(measure(p, folder, a.ids, a.shots, a.per_id, samplers)))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"params": a.params, "results": res}, f, indent=1)
    return res


if __name__ == "__main__":
    main()
