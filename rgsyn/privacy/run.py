"""The `privacy` stage: near-copy rate of the release with its positive control, membership inference,
and novel identities checked for identity leakage -> audit.report .json / .md / .png, and the dataset
cards of both releases (rgsyn.synth.card), which carry these figures.

Rates are fractions. Every figure is computed here from the shards, the generator and the real data,
with the auditor (never the reference encoder) wherever identity features are compared; the one
exception is the second opinion on novel identities, where the reference encoder, which knows every
real identity best, plays an insider attacker.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from rgsyn.config import Params
from rgsyn.data.images import load_images
from rgsyn.data.layouts import member_split
from rgsyn.devices import resolve_device
from rgsyn.encoder import extract_features, load_encoder
from rgsyn.generator.coldstart import image_size
from rgsyn.generator.sampler import Sampler, per_sample_seeds
from rgsyn.identity import prototypes
from rgsyn.privacy import mia
from rgsyn.privacy.audit import Auditor, identity_threshold
from rgsyn.privacy.control import resize_round_trip, sdedit
from rgsyn.privacy.report import write_markdown, write_plot
from rgsyn.synth.card import write_cards


def _split_classes(records, table):
    return torch.tensor([table[r.pid] for r in records])


def positive_control(p: Params, bundle, auditor: Auditor, members, table, device) -> dict:
    """Detection rates of the near-copy rule on round-tripped member images."""
    a = p.audit
    rng = np.random.default_rng([a.seed, 1])
    pick = [members[i] for i in sorted(rng.choice(len(members), min(a.control_images, len(members)), replace=False))]
    gen = image_size(bundle)
    full = load_images([r.path for r in pick], *_data_size(p, pick))
    out = {"n": len(pick), "resize": float(auditor.copy_scores(resize_round_trip(full, gen))["near_copy"].float().mean())}
    small = load_images([r.path for r in pick], *gen)
    sampler = Sampler.from_params(bundle, p.sampler, p.compute.precision)
    seeds = per_sample_seeds(a.seed + 2, len(pick))
    for t in a.control_timesteps:
        x = sdedit(bundle, sampler, small, _split_classes(pick, table), t, seeds)
        out[f"sdedit_t{t}"] = float(auditor.copy_scores(x)["near_copy"].float().mean())
    return out


def _data_size(p: Params, records) -> tuple[int, int]:
    """The dataset's own image size (embedded: its render size; real layouts: the first image's)."""
    if p.data.layout == "embedded":
        return p.data.embedded.height, p.data.embedded.width
    from PIL import Image

    with Image.open(records[0].path) as im:
        return im.size[1], im.size[0]


def membership(p: Params, bundle, auditor: Auditor, table, shards) -> dict:
    """Both attacks on members vs held-out images of the identities that have held-out images."""
    members, held = member_split(p.data)
    held_ids = {r.pid for r in held}
    mem = [r for r in members if r.pid in held_ids]
    rows = mem + held
    gen = load_images([r.path for r in rows], *image_size(bundle))
    err = mia.denoising_error(bundle, gen, _split_classes(rows, table), p.audit.mia_timesteps,
                              per_sample_seeds(p.audit.seed + 3, len(rows)))
    enc = auditor.encoder
    feats = extract_features(enc, load_images([r.path for r in rows], enc.cfg.height, enc.cfg.width),
                             device=next(enc.parameters()).device)
    syn_feats = auditor.features(shards.images())
    shard = mia.shard_scores(feats, [r.pid for r in rows], syn_feats, shards.labels.numpy())
    n = len(mem)
    return {"members": n, "nonmembers": len(held),
            "loss": mia.attack_summary(-err[:n], -err[n:], p.audit.seed),
            "shard": mia.attack_summary(shard[:n], shard[n:], p.audit.seed),
            "_scores": {"loss": (-err[:n], -err[n:]), "shard": (shard[:n], shard[n:])}}


def gate_features(auditor: Auditor, release) -> torch.Tensor:
    """Auditor features (N, D) of every row of a release, computed shard by shard on the decoded images:
    the batches synthesis audited (a shard's PNGs hold its images exactly), so they are the gate's own."""
    from rgsyn.synth.reader import read_shards, shard_files

    return torch.cat([auditor.features(read_shards(f, accepted_only=False).images()) for f in shard_files(release)])


def novel_leaks(sh, feats: torch.Tensor, auditor: Auditor, sem_floor: float) -> dict:
    """The 1:N gate's rule (rgsyn.privacy.novel.leaked_identities) on the rows of a novel release `sh`
    with their auditor features (gate_features), before and after the gate: `candidates` the rows the
    other gates accept (recomputed from the shard's columns as synthesis computed them), `released`
    the accepted rows. -> identities, leaked ones and per-identity similarities of each."""
    from rgsyn.privacy.novel import identity_sims, leaked_identities
    from rgsyn.synth.engine import gate

    col = lambda c: sh.table.column(c).to_numpy(zero_copy_only=False)  # noqa: E731
    ids = sh.labels.numpy()
    cand = gate(col("consistent").astype(bool), col("near_copy").astype(bool), col("r_sem"), sem_floor)
    out = {}
    for name, rows in (("candidates", cand), ("released", col("accepted").astype(bool))):
        f, k = feats[torch.from_numpy(rows)], ids[rows]
        out[name] = {"ids": sorted({int(i) for i in k}), "sims": identity_sims(f, k, auditor.protos),
                     **leaked_identities(f, k, auditor.protos, auditor.identity_threshold)}
    return out


def novel(p: Params, auditor: Auditor, progress: bool) -> dict:
    """Novel identities through synthesis (audit.novel_ids, synth.per_id each). One rule decides whether
    an identity leaks (rgsyn.privacy.novel.leaked_identities: the auditor prototype over its images
    exceeds the FPIR threshold, 1:N against every real identity); the gate (synthesis) applies it to the
    images the other gates accept and releases none of an identity that fails. Here the same rule reads
    the same auditor features of the same images (novel_leaks): `leaked` / `pre_gate_rate` before the
    gate (of the identities with any image the other gates accept: `screened`), `leaked_kept` /
    `leak_rate` on what is released (0 unless the shards were gated otherwise).
    Other measures, which the gate does not apply: per half of the released images (`split_half_rate`:
    would a second draw of the person match?), and the reference encoder, trained on the real
    identities, matching the kept ones against them at its own FPIR threshold; its `baseline` is the
    same check on the augment shards' real identities against the *other* real identities (how often it
    matches generated images of someone to a wrong real person), so its rate reads against that, not
    against zero."""
    from rgsyn.privacy.novel import leaked_identities, novel_release
    from rgsyn.synth.reader import read_shards
    from rgsyn.synth.run import synthesize

    a = p.audit
    m = synthesize(novel_release(p), progress=progress)["metrics"]
    sh = read_shards(a.novel_out_dir, accepted_only=False)
    feats = gate_features(auditor, a.novel_out_dir)
    leaks = novel_leaks(sh, feats, auditor, p.synth.sem_floor)
    pre, rel = leaks["candidates"], leaks["released"]
    ids, acc = sh.labels.numpy(), sh.table.column("accepted").to_numpy(zero_copy_only=False).astype(bool)
    kept = rel["ids"]
    released = sh.images()[torch.from_numpy(acc)]

    ref = load_encoder(p.reference.out_dir)
    train = [r for part in member_split(p.data) for r in part]
    real_pids = sorted({r.pid for r in train})
    t = {q_: i for i, q_ in enumerate(real_pids)}
    rf = extract_features(ref, load_images([r.path for r in train], ref.cfg.height, ref.cfg.width))
    real_protos = prototypes(rf, torch.tensor([t[r.pid] for r in train]), len(real_pids))
    ref_thr, _ = identity_threshold(real_protos, a.fpir)
    ref_kept = leaked_identities(extract_features(ref, released), ids[acc], real_protos, ref_thr)["all"] if kept else []
    aug = read_shards(p.synth.out_dir, accepted_only=True)  # features: the reference encoder's
    wrong = 0
    aug_ids = [int(i) for i in np.unique(aug.labels.numpy()) if int(i) in t]
    for pid in aug_ids:
        others = torch.cat([real_protos[:t[pid]], real_protos[t[pid] + 1:]])
        wrong += len(leaked_identities(aug.features[aug.labels == pid], [0] * int((aug.labels == pid).sum()),
                                       others, ref_thr)["all"])
    share = lambda n: n / len(kept) if kept else 0.0  # noqa: E731
    screened = len(pre["ids"])
    return {"generated": a.novel_ids, "screened": screened, "leaked": len(pre["all"]),
            "pre_gate_rate": len(pre["all"]) / screened if screened else 0.0,
            "kept": len(kept), "leaked_kept": len(rel["all"]), "leak_rate": share(len(rel["all"])),
            "split_half_leaked": len(rel["split_half"]), "split_half_rate": share(len(rel["split_half"])),
            "threshold": auditor.identity_threshold, "fpir": a.fpir,
            "reference": {"threshold": ref_thr, "leaked_kept": len(ref_kept), "rate": share(len(ref_kept)),
                          "baseline_rate": wrong / len(aug_ids) if aug_ids else 0.0, "baseline_n": len(aug_ids)},
            "accepted_samples": int(acc.sum()), "samples": int(len(ids)), "synth": m,
            "_leak_sims": np.asarray(list(pre["sims"].values()), np.float64)}


def run_privacy(p: Params, progress: bool = True) -> dict:
    from rgsyn.synth.reader import read_shards
    from rgsyn.synth.run import load_generator

    device = resolve_device(p.synth.device)
    bundle, pids = load_generator(p.synth.checkpoint)
    bundle.to(device).transformer.eval()
    table = {q: i for i, q in enumerate(pids)}
    auditor = Auditor.build(p, list(pids), image_size(bundle), device)
    shards = read_shards(p.synth.out_dir, accepted_only=False)
    col = lambda c: shards.table.column(c).to_numpy(zero_copy_only=False)  # noqa: E731
    members, _ = member_split(p.data)
    near, acc = col("near_copy").astype(bool), col("accepted").astype(bool)
    report = {
        "copy": {"threshold": auditor.pixel_threshold, "feature_threshold": auditor.feature_threshold,
                 "quantile": p.audit.copy_quantile, "rate": float(near.mean()), "n": int(len(near)),
                 "rate_pixel": float((col("copy_pixel_sim").astype(np.float64) > auditor.pixel_threshold).mean()),
                 "rate_feature": float((col("copy_feature_sim").astype(np.float64) > auditor.feature_threshold).mean()),
                 "positive_control": positive_control(p, bundle, auditor, members, table, device)},
        "consistency": {"rate_all": float(col("consistent").mean()),
                        "rate_accepted": float(col("consistent")[acc].mean()) if acc.any() else 0.0,
                        "accepted": int(acc.sum()), "link": auditor.link},
        "mia": membership(p, bundle, auditor, table, shards),
        "novel": novel(p, auditor, progress),
        "auditor": {"encoder": p.audit.encoder, **_auditor_meta(p.audit.encoder)},
    }
    base = Path(p.audit.report)
    plots = {"calibration": auditor.calibration, "samples": {"pixel": col("copy_pixel_sim"),
                                                            "feature": col("copy_feature_sim")},
             "thresholds": auditor.thresholds(), "mia": report["mia"].pop("_scores"),
             "novel": report["novel"].pop("_leak_sims")}
    files = [write_json(report, base.with_suffix(".json")), write_markdown(report, base.with_suffix(".md")),
             write_plot(plots, base.with_suffix(".png"))]
    files += write_cards(p)  # after the report: the cards carry its figures
    return {"report": report, "files": [str(f) for f in files]}


def _auditor_meta(path) -> dict:
    meta = json.loads((Path(path) / "encoder.json").read_text())
    return {k: meta[k] for k in ("dataset", "target_test") if k in meta}


def write_json(obj, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=float))
    return path
