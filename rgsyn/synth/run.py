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
import torch
from tqdm.auto import tqdm

from rgsyn.config import Params, json_hash, to_dict
from rgsyn.encoder import git_sha, load_encoder
from rgsyn.memory_bank import ensure_memory_bank, load_memory_bank
from rgsyn.synth import schema
from rgsyn.synth.audit import audit_report, impostor_stats, save_histogram, write_report
from rgsyn.devices import resolve_device
from rgsyn.synth.engine import Synthesizer

# synth keys that decide how a run executes, not what it writes (left out of the synthesis id)
EXECUTION_KEYS = ("out_dir", "task_runner", "dask_address", "workers", "retries", "device")
MODEL_SUFFIXES = (".json", ".safetensors", ".bin")
REPORT_JSON, REPORT_PNG = Path("reports/synth_audit.json"), Path("reports/synth_audit.png")


@dataclass(frozen=True)
class Plan:
    """What every shard task needs to know, computed once (small and picklable for Dask)."""

    synthesis_id: str
    generator_ckpt: str
    out_dir: str
    class_pids: tuple[int, ...]  # generator class i -> dataset pid
    shards: tuple[tuple[int, ...], ...]  # class indices of each shard (contiguous, whole identities)
    impostor: dict  # threshold, fmr, pairs, histogram of the real impostor similarities
    provenance: dict  # git sha, params hash, content hashes of generator / encoder / bank

    @property
    def threshold(self) -> float:
        return self.impostor["threshold"]


# -- checkpoints ------------------------------------------------------------------------------------
def _meta(path: Path) -> tuple[str, dict]:
    for kind in ("rl", "coldstart"):
        if (path / f"{kind}.json").exists():
            return kind, json.loads((path / f"{kind}.json").read_text())
    raise FileNotFoundError(f"params.yaml: synth.checkpoint = {path}: neither rl.json nor coldstart.json there; "
                            "point it at an RL (checkpoints/rl) or cold-start (checkpoints/coldstart) folder "
                            "and run that stage first")


def model_files(path: str | Path) -> list[tuple[str, Path]]:
    """Every file that defines a generator, following rl -> coldstart -> pretrained, as (name, path):
    name = link of the chain + path inside its folder (folder names may move, contents may not)."""
    path = Path(path)
    kind, meta = _meta(path)
    chain = [path]
    if kind == "rl":
        chain.append(Path(meta["coldstart"]))
        meta = json.loads((chain[-1] / "coldstart.json").read_text())
    chain.append(Path(meta["pretrained"]))
    return [(f"{i}:{f.relative_to(d).as_posix()}", f) for i, d in enumerate(chain) for f in sorted(d.rglob("*"))
            if f.is_file() and f.suffix in MODEL_SUFFIXES and "train_state" not in f.relative_to(d).parts]


def content_hash(files: list[tuple[str, Path]]) -> str:
    """Short sha256 over (name, file sha256) pairs."""
    h = hashlib.sha256()
    for name, f in files:
        h.update(f"{name}\0{schema.sha256_file(f)}\n".encode())
    return h.hexdigest()[:16]


def load_generator(path: str | Path):
    """-> (bundle, class pids). RL adapters are merged into the base weights: same model, no LoRA cost."""
    path = Path(path)
    kind, meta = _meta(path)
    if kind == "coldstart":
        from rgsyn.generator.coldstart import load_coldstart

        return load_coldstart(path)
    from peft.tuners.tuners_utils import BaseTunerLayer

    from rgsyn.rl.loop import load_rl

    bundle, pids = load_rl(path)
    with torch.no_grad():
        for m in bundle.transformer.modules():
            if isinstance(m, BaseTunerLayer):
                m.merge()
    return bundle, pids


# -- plan -------------------------------------------------------------------------------------------
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
    if sp.ids_per_shard < 1 or sp.batch < 1:
        raise ValueError("params.yaml: synth.ids_per_shard and synth.batch must be >= 1")
    _, meta = _meta(Path(sp.checkpoint))
    pids = meta["pids"]
    n = len(pids) if sp.num_ids == 0 else min(sp.num_ids, len(pids))
    shards = tuple(tuple(range(a, min(a + sp.ids_per_shard, n))) for a in range(0, n, sp.ids_per_shard))
    bank = ensure_memory_bank(p.rl.bank, p.data.index, p.reference.out_dir)
    feats, bank_pids = load_memory_bank(bank)
    impostor = impostor_stats(feats, bank_pids, sp.fmr)
    content = {k: v for k, v in to_dict(sp).items() if k not in EXECUTION_KEYS}
    enc = Path(p.reference.out_dir)
    prov = {
        "git_sha": git_sha(),
        "params_hash": json_hash(content),
        "generator_hash": content_hash(model_files(sp.checkpoint)),
        "encoder_hash": content_hash([(f.name, f) for f in sorted(enc.glob("encoder.*"))]),
        "bank_hash": content_hash([("bank", bank)]),
        "reward_hash": json_hash({k: getattr(p.rl, k) for k in ("sigma", "alpha", "eps", "tau", "weights")}),
    }
    sid = json_hash(prov)
    return Plan(sid, str(sp.checkpoint), str(sp.out_dir), tuple(pids), shards, impostor, prov)


# -- shards -----------------------------------------------------------------------------------------
_CACHE: dict = {}
_LOCK = threading.Lock()


def synthesizer(p: Params, plan: Plan) -> Synthesizer:
    """One loaded generator/encoder/bank per process and plan (threads share it; Dask workers load once)."""
    key = (plan.synthesis_id, p.synth.device)
    with _LOCK:
        if key not in _CACHE:
            device = resolve_device(p.synth.device)
            bundle, pids = load_generator(plan.generator_ckpt)
            feats, bank_pids = load_memory_bank(p.rl.bank)
            _CACHE.clear()
            _CACHE[key] = Synthesizer(bundle, pids, load_encoder(p.reference.out_dir), feats, bank_pids,
                                      p.synth, p.rl, device)
        return _CACHE[key]


def _entry(path: Path, index: int, seed: int) -> dict:
    acc = pq.read_table(path, columns=["accepted"]).column("accepted").to_numpy(zero_copy_only=False)
    return {"file": path.name, "index": index, "rows": len(acc), "accepted": int(acc.sum()),
            "sha256": schema.sha256_file(path), "seed": seed}


def write_shard(p: Params, plan: Plan, index: int, written_by: dict | None = None) -> dict:
    """Synthesise shard `index` unless a complete file of this synthesis is already there -> manifest entry."""
    classes = plan.shards[index]
    out = Path(plan.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / schema.shard_name(index)
    seed = shard_seed(p.synth.seed, index)
    rows = len(classes) * p.synth.per_id
    have = schema.shard_meta(path)
    if have and have.get("synthesis_id") == plan.synthesis_id and have["rows"] == rows:
        return {**_entry(path, index, seed), "skipped": True, "written_by": None, "seconds": 0.0}
    t0 = time.perf_counter()
    meta = {"synthesis_id": plan.synthesis_id, "shard": index, "shard_seed": seed,
            "generator_ckpt": plan.generator_ckpt, "pids": [plan.class_pids[c] for c in classes],
            "threshold": plan.threshold, "fmr": p.synth.fmr, "sem_floor": p.synth.sem_floor, "schema_version": 1,
            **plan.provenance}
    synthesizer(p, plan).write(list(classes), sample_seeds(seed, rows), plan.threshold, path, meta,
                               plan.generator_ckpt, plan.synthesis_id)
    return {**_entry(path, index, seed), "skipped": False, "written_by": written_by or {},
            "seconds": time.perf_counter() - t0}


# -- finalize ---------------------------------------------------------------------------------------
def finalize(p: Params, plan: Plan, entries: list[dict], written_by: dict | None = None,
             report_dir: str | Path | None = None) -> dict:
    """Check every shard is there once, write `_manifest.json` and the audit report (reports/, or
    `report_dir` for side runs such as the ablation's generators)."""
    out = Path(plan.out_dir)
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
    tables = [pq.read_table(out / e["file"], columns=["label", "features", "nn_real_sim", "r_sem", "accepted"])
              for e in shards]
    col = lambda name: np.concatenate([t.column(name).to_numpy() for t in tables])  # noqa: E731
    flat = [t.column("features").combine_chunks() for t in tables]
    feats = np.concatenate([np.array(f.values.to_numpy(), np.float32).reshape(-1, f.type.list_size) for f in flat])
    bank, bank_pids = load_memory_bank(p.rl.bank)
    report = audit_report(col("label"), feats.astype(np.float32), col("nn_real_sim"), col("r_sem"),
                          col("accepted").astype(bool), bank, bank_pids, plan.impostor, p.synth.sem_floor)
    rows = sum(e["rows"] for e in shards)
    written = [e for e in entries if not e["skipped"]]
    seconds = sum(e["seconds"] for e in written)
    manifest = {"synthesis_id": plan.synthesis_id, "generator_ckpt": plan.generator_ckpt, "rows": rows,
                "accepted": report["accepted"], "feature_dim": int(feats.shape[1]),
                "columns": schema.arrow_schema(int(feats.shape[1])).names, "threshold": plan.threshold,
                "fmr": p.synth.fmr, "provenance": plan.provenance, "shards": shards}
    schema.write_manifest(out, manifest)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report = {**report, "synthesis_id": plan.synthesis_id, "generator_ckpt": plan.generator_ckpt,
              "written_by": written_by or {}, "finished_at": now, "out_dir": str(out)}
    rj, rp = ((Path(report_dir) / REPORT_JSON.name, Path(report_dir) / REPORT_PNG.name) if report_dir
              else (REPORT_JSON, REPORT_PNG))
    write_report(report, rj)
    save_histogram(col("nn_real_sim"), plan.impostor, rp)
    metrics = {k: report[k] for k in ("samples", "accepted", "accept_rate", "leaked", "leakage_rate",
                                      "threshold", "below_sem_floor", "nn_same_identity_rate")}
    metrics.update(shards=len(shards), shards_written=len(written), removed_stray=len(stray),
                   images_per_s_per_worker=sum(e["rows"] for e in written) / seconds if seconds else 0.0)
    return {"manifest": str(out / schema.MANIFEST), "report": str(rj), "histogram": str(rp),
            "metrics": metrics}


def synthesize(p: Params, written_by: dict | None = None, progress: bool = True,
               report_dir: str | Path | None = None) -> dict:
    """plan -> every shard in order -> finalize, in this process (no Prefect, no MLflow)."""
    plan = make_plan(p)
    entries = [write_shard(p, plan, i, written_by)
               for i in tqdm(range(len(plan.shards)), desc="synth shards", disable=not progress)]
    return finalize(p, plan, entries, written_by, report_dir)
