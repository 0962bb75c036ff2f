"""The synthesize stage as three steps a task runner can spread: plan -> write_shard (one per shard,
independent, idempotent) -> finalize (manifest + audit report). `synthesize` runs them in order
(`python -m rgsyn.synth [params.yaml]`); flows/synthesize.py maps write_shard over Prefect workers.

Idempotency: a shard file is complete by construction (temp + rename) and carries the synthesis id in
its metadata; write_shard skips a shard whose file exists with the current id and the expected row
count, and rewrites it otherwise. The seeds depend only on (synth.seed, shard index, row), so a rerun
after a kill writes the remaining shards byte-identical to an uninterrupted run.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from rgsyn.config import Params, json_hash, to_dict
from rgsyn.encoder import load_encoder
from rgsyn.provenance import git_sha
from rgsyn.memory_bank import ensure_memory_bank, load_memory_bank
from rgsyn.privacy.novel import novel_pids
from rgsyn.synth import schema
from rgsyn.devices import configure, resolve_device
from rgsyn.synth.engine import Synthesizer

# synth keys that decide how a run executes, not what it writes (left out of the synthesis id)
EXECUTION_KEYS = ("out_dir", "metrics", "task_runner", "dask_address", "workers", "retries", "device")
AUDIT_KEYS = ("copy_quantile", "cluster_quantile", "fpir")  # what shapes the audit columns
REWARD_KEYS = ("sigma", "alpha", "eps", "tau", "weights")  # rl keys that shape the reward columns
MODES = ("augment", "novel")
MODEL_SUFFIXES = (".json", ".safetensors", ".bin")


@dataclass(frozen=True)
class Plan:
    """What every shard task needs to know, computed once (small and picklable for Dask)."""

    synthesis_id: str
    generator_ckpt: str
    out_dir: str
    class_pids: tuple[int, ...]  # generator class i -> dataset pid (novel identities after the real ones)
    num_real: int  # classes 0..num_real-1 are real identities
    shards: tuple[tuple[int, ...], ...]  # class indices of each shard (contiguous, whole identities)
    provenance: dict  # git sha, params hash, content hashes of generator / encoders / bank


# -- checkpoints ------------------------------------------------------------------------------------
def _meta(path: Path) -> tuple[str, dict]:
    for kind in ("rl", "coldstart"):
        if (path / f"{kind}.json").exists():
            return kind, json.loads((path / f"{kind}.json").read_text())
    raise FileNotFoundError(f"params.yaml: synth.checkpoint = {path}: neither rl.json nor coldstart.json there; "
                            "point it at an RL (checkpoints/rl) or cold-start (checkpoints/coldstart) folder "
                            "and run that stage first")


def generator_chain(path: str | Path) -> list[Path]:
    """The folders that define a generator, in order: [rl,] coldstart, pretrained (the base DiT last)."""
    path = Path(path)
    kind, meta = _meta(path)
    chain = [path]
    if kind == "rl":
        chain.append(Path(meta["coldstart"]))
        meta = json.loads((chain[-1] / "coldstart.json").read_text())
    return chain + [Path(meta["pretrained"])]


def model_files(path: str | Path, links: list[Path] | None = None) -> list[tuple[str, Path]]:
    """Every file that defines a generator (or the given `links` of its chain), as (name, path): name =
    link of the chain + path inside its folder (folder names may move, contents may not)."""
    chain = generator_chain(path) if links is None else links
    return [(f"{i}:{f.relative_to(d).as_posix()}", f) for i, d in enumerate(chain) for f in sorted(d.rglob("*"))
            if f.is_file() and f.suffix in MODEL_SUFFIXES and "train_state" not in f.relative_to(d).parts]


def content_hash(files: list[tuple[str, Path]]) -> str:
    """Short sha256 over (name, file sha256) pairs."""
    h = hashlib.sha256()
    for name, f in files:
        h.update(f"{name}\0{schema.sha256_file(f)}\n".encode())
    return h.hexdigest()[:16]


def load_generator(path: str | Path):
    """-> (bundle, class pids): a cold-start generator, or an RL one with its adapters merged into the base
    weights (peft's merge_and_unload: same model, no LoRA cost)."""
    path = Path(path)
    kind, _ = _meta(path)
    if kind == "coldstart":
        from rgsyn.generator.coldstart import load_coldstart

        return load_coldstart(path)
    from rgsyn.rl.core import load_rl

    return load_rl(path, merge=True)


# -- plan -------------------------------------------------------------------------------------------
def reward_params(p: Params) -> dict:
    """The rl keys that shape the reward columns (hashed into a synthesis' id)."""
    return {k: getattr(p.rl, k) for k in REWARD_KEYS}


def content_params(p: Params) -> dict:
    """The params that shape a synthesis' samples and audit columns (hashed into its id)."""
    return {"synth": {k: v for k, v in to_dict(p.synth).items() if k not in EXECUTION_KEYS},
            "sampler": to_dict(p.sampler), "audit": {k: getattr(p.audit, k) for k in AUDIT_KEYS},
            "holdout": [p.data.holdout_per_id, p.data.seed]}


def shard_seed(seed: int, index: int) -> int:
    """The seed of shard `index`: a function of (global seed, index) only; 63 bits (int64 column)."""
    return int(np.random.SeedSequence(entropy=seed, spawn_key=(index,)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def sample_seeds(shard_seed_: int, n: int) -> np.ndarray:
    """Per-sample seeds (n,) int64 of a shard, row order."""
    return (np.random.SeedSequence(shard_seed_).generate_state(n, np.uint64) >> np.uint64(1)).astype(np.int64)


def make_plan(p: Params) -> Plan:
    sp = p.synth
    if sp.per_id < 3:
        raise ValueError(f"params.yaml: synth.per_id = {sp.per_id}: the per-sample R_exp credit needs at least 3 "
                         "images per identity; set synth.per_id >= 3")
    if sp.ids_per_shard < 1 or sp.batch < 1 or sp.candidates < 1:
        raise ValueError("params.yaml: synth.ids_per_shard, synth.batch and synth.candidates must be >= 1")
    if sp.mode not in MODES:
        raise ValueError(f"params.yaml: synth.mode = {sp.mode!r}; use one of {MODES}")
    _, meta = _meta(Path(sp.checkpoint))
    real = meta["pids"]
    if sp.mode == "augment":
        n = len(real) if sp.num_ids == 0 else min(sp.num_ids, len(real))
        first, pids = 0, list(real)
    else:
        if sp.num_ids < 1:
            raise ValueError("params.yaml: synth.num_ids must be >= 1 in novel mode (how many new identities)")
        n, first, pids = sp.num_ids, len(real), list(real) + novel_pids(sp.num_ids)
    shards = tuple(tuple(range(first + a, first + min(a + sp.ids_per_shard, n))) for a in range(0, n, sp.ids_per_shard))
    bank = ensure_memory_bank(p.rl.bank, p.data, p.reference.out_dir)
    enc, aud = Path(p.reference.out_dir), Path(p.audit.encoder)
    prov = {
        "git_sha": git_sha(),
        "params_hash": json_hash(content_params(p)),
        "generator_hash": content_hash(model_files(sp.checkpoint)),
        "encoder_hash": content_hash([(f.name, f) for f in sorted(enc.glob("encoder.*"))]),
        "auditor_hash": content_hash([(f.name, f) for f in sorted(aud.glob("encoder.*"))]),
        "bank_hash": content_hash([("bank", bank)]),
        "reward_hash": json_hash(reward_params(p)),
    }
    sid = json_hash(prov)
    return Plan(sid, str(sp.checkpoint), str(sp.out_dir), tuple(pids), len(real), shards, prov)


# -- shards -----------------------------------------------------------------------------------------
_CACHE: dict = {}
_LOCK = threading.Lock()


def synthesizer(p: Params, plan: Plan) -> Synthesizer:
    """One loaded generator/encoders/bank/auditor per process and plan (threads share it; Dask workers
    load once)."""
    key = (plan.synthesis_id, p.synth.device)
    with _LOCK:
        if key not in _CACHE:
            from rgsyn.generator.coldstart import image_size
            from rgsyn.privacy.audit import Auditor
            from rgsyn.privacy.novel import add_novel_identities

            device = resolve_device(p.synth.device)
            configure(p.compute)
            bundle, real = load_generator(plan.generator_ckpt)
            if len(plan.class_pids) > plan.num_real:
                add_novel_identities(bundle, len(plan.class_pids) - plan.num_real, p.synth.seed)
            feats, bank_pids = load_memory_bank(p.rl.bank)
            auditor = Auditor.build(p, list(real), image_size(bundle), device)
            _CACHE.clear()
            _CACHE[key] = Synthesizer(bundle, list(plan.class_pids), load_encoder(p.reference.out_dir), feats,
                                      bank_pids, auditor, p.synth, p.sampler, p.rl, plan.num_real, device,
                                      p.compute)
        return _CACHE[key]


def _entry(path: Path, index: int, seed: int) -> dict:
    acc = pq.read_table(path, columns=["accepted"]).column("accepted").to_numpy(zero_copy_only=False)
    return {"file": path.name, "index": index, "rows": len(acc), "accepted": int(acc.sum()),
            "sha256": schema.sha256_file(path), "seed": seed}


def write_shard(p: Params, plan: Plan, index: int, written_by: dict | None = None) -> dict:
    """Synthesise shard `index` unless a complete file of this synthesis is already there -> manifest entry."""
    classes = plan.shards[index]
    out = schema.shard_dir(plan.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / schema.shard_name(index)
    seed = shard_seed(p.synth.seed, index)
    rows = len(classes) * p.synth.per_id
    have = schema.shard_meta(path)
    if have and have.get("synthesis_id") == plan.synthesis_id and have["rows"] == rows:
        return {**_entry(path, index, seed), "skipped": True, "written_by": None, "seconds": 0.0}
    t0 = time.perf_counter()
    syn = synthesizer(p, plan)
    meta = {"synthesis_id": plan.synthesis_id, "shard": index, "shard_seed": seed, "mode": p.synth.mode,
            "generator_ckpt": plan.generator_ckpt, "pids": [plan.class_pids[c] for c in classes],
            "audit_thresholds": syn.auditor.thresholds(), "sem_floor": p.synth.sem_floor, "schema_version": 2,
            **plan.provenance}
    syn.write(list(classes), sample_seeds(seed, rows), path, meta, plan.generator_ckpt, plan.synthesis_id)
    return {**_entry(path, index, seed), "skipped": False, "written_by": written_by or {},
            "seconds": time.perf_counter() - t0}


# -- finalize ---------------------------------------------------------------------------------------
SUMMARY_COLUMNS = ("label", "accepted", "near_copy", "consistent", "r_sem", "identity_leak_sim")


def finalize(p: Params, plan: Plan, entries: list[dict], written_by: dict | None = None) -> dict:
    """Check every shard is there once, write `_manifest.json`; -> the run's counts and rates."""
    out = schema.shard_dir(plan.out_dir)
    got = sorted(e["index"] for e in entries)
    if got != list(range(len(plan.shards))):
        raise RuntimeError(f"{out}: shard results {got} do not cover shards 0..{len(plan.shards) - 1} once each")
    schema.sweep_temp(out)
    wanted = {schema.shard_name(i) for i in range(len(plan.shards))}
    stray = sorted(f.name for f in out.glob("shard-*.parquet") if f.name not in wanted)
    for name in stray:  # shards of an earlier, larger plan: a glob over the folder would load them
        (out / name).unlink()
    previous = {e["file"]: e for e in (schema.read_manifest(out) or {}).get("shards", [])}
    shards = []
    for e in sorted(entries, key=lambda e: e["index"]):
        e = dict(e)
        if e.pop("skipped"):
            old = previous.get(e["file"])
            e["written_by"] = (old["written_by"] if old and old["sha256"] == e["sha256"]
                               else {"adopted_by": written_by or {}, "note": "finished by an interrupted run"})
        shards.append(e)
    tables = [pq.read_table(out / e["file"], columns=list(SUMMARY_COLUMNS)) for e in shards]
    col = lambda name: np.concatenate([t.column(name).to_numpy(zero_copy_only=False) for t in tables])  # noqa: E731
    n, acc = sum(e["rows"] for e in shards), col("accepted").astype(bool)
    meta = schema.shard_meta(out / shards[0]["file"])
    written = [e for e in entries if not e["skipped"]]
    seconds = sum(e["seconds"] for e in written)
    ids = col("label")
    leak = col("identity_leak_sim").astype(np.float64)
    metrics = {"mode": p.synth.mode, "samples": n, "identities": int(len(np.unique(ids))),
               "accepted": int(acc.sum()), "accept_rate": float(acc.mean()),
               "near_copy_rate": float(col("near_copy").mean()), "consistency_rate": float(col("consistent").mean()),
               "below_sem_floor": int((col("r_sem").astype(np.float64) < p.synth.sem_floor).sum()),
               "thresholds": meta["audit_thresholds"], "shards": len(shards), "shards_written": len(written),
               "removed_stray": len(stray),
               "images_per_s_per_worker": sum(e["rows"] for e in written) / seconds if seconds else 0.0}
    if p.synth.mode == "novel":
        thr = meta["audit_thresholds"]["identity"]
        per_id = {int(i): bool(v > thr) for i, v in zip(ids, leak)}
        metrics.update(leaked_identities=int(sum(per_id.values())), kept_identities=int(len(np.unique(ids[acc]))))
    manifest = {"synthesis_id": plan.synthesis_id, "generator_ckpt": plan.generator_ckpt, "rows": n,
                "accepted": int(acc.sum()), "mode": p.synth.mode, "columns": schema.arrow_schema(1).names,
                "audit_thresholds": meta["audit_thresholds"], "provenance": plan.provenance, "shards": shards,
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    schema.write_manifest(out, manifest)
    return {"manifest": str(out / schema.MANIFEST), "metrics": metrics}


def synthesize(p: Params, written_by: dict | None = None, progress: bool = True) -> dict:
    """plan -> every shard in order -> finalize, in this process (no Prefect, no MLflow)."""
    plan = make_plan(p)
    entries = [write_shard(p, plan, i, written_by)
               for i in tqdm(range(len(plan.shards)), desc="synth shards", disable=not progress)]
    return finalize(p, plan, entries, written_by)
