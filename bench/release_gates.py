"""Stricter acceptance of the release's own rows, judged where a choice may be made: the utility check's
held-out train identities (rgsyn.downstream.utility), never the test split.

Gates over the rows of `synth.out_dir` (after `make run`):

    audit        the audit's `accepted` (what ships)
    ref_top1     audit, and the sample's nearest member-image prototype in the reference encoder's space
                 (the shard's `features`, the memory bank's prototypes) is its own identity
    sem_median   audit, and R_sem at least the median of the accepted rows'

Each gate is written as a copy of the shards with its own `accepted` column and trained with the check's
own arms, every fold x `--seeds`, paired with real only. `--extra NAME:DIR` adds another shards folder's
accepted rows as one more row (e.g. another generator's samples through the same audit).

    python bench/release_gates.py [--params params.yaml] [--seeds 0 1] [--work /tmp/gates] [--json out.json]
        [--extra coldstart_audit:/tmp/syn-cs]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def gates(p) -> tuple[object, dict]:
    """-> (the release's pyarrow table, gate -> accepted mask (N,) bool)."""
    import torch

    from rgsyn.data.records import relabel
    from rgsyn.identity import nearest_prototype, prototypes
    from rgsyn.memory_bank import load_memory_bank
    from rgsyn.synth.reader import read_shards

    sh = read_shards(p.synth.out_dir, accepted_only=False)
    acc = sh.table.column("accepted").to_numpy(zero_copy_only=False).astype(bool)
    r_sem = sh.table.column("r_sem").to_numpy().astype(np.float64)
    feats, pids = load_memory_bank(p.rl.bank)
    classes, cls = relabel(pids.tolist())
    protos = prototypes(feats, torch.from_numpy(classes), len(cls))  # (C, D)
    top = nearest_prototype(sh.features, protos)[0].numpy()
    own = np.array([cls[q] for q in sh.labels.tolist()])
    sem_median = acc & (r_sem >= np.median(r_sem[acc]))
    return sh.table, {"audit": acc, "ref_top1": acc & (top == own), "sem_median": sem_median}


def write_gate(table, mask: np.ndarray, folder: Path) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    i = table.schema.get_field_index("accepted")
    pq.write_table(table.set_column(i, "accepted", pa.array(mask)), folder / "shard-00000.parquet")
    return str(folder)


def arm(job) -> float:
    params, arm_, fold, seed, shards = job
    from rgsyn.config import load_params
    from rgsyn.downstream.utility import train_arm

    p = load_params(params, {"downstream.mix.synthetic": shards} if shards else {})
    m = train_arm(p, arm_, fold, seed, threads=1)
    return m["avg_acc" if "avg_acc" in m else "mAP"]


def main(argv=None) -> dict:
    from rgsyn import stats
    from rgsyn.config import load_params
    from rgsyn.synth.reader import read_shards

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", default="/tmp/release-gates")
    ap.add_argument("--json", default="")
    ap.add_argument("--extra", action="append", default=[], help="NAME:DIR: a shards folder's accepted rows as a row")
    a = ap.parse_args(argv)
    p = load_params(a.params)
    table, masks = gates(p)
    table_of = dict.fromkeys(masks, table)
    folders = {g: write_gate(table, m, Path(a.work) / g) for g, m in masks.items()}
    for name, folder in (x.split(":", 1) for x in a.extra):
        folders[name] = folder
        t = read_shards(folder, accepted_only=False).table
        table_of[name], masks[name] = t, t.column("accepted").to_numpy(zero_copy_only=False).astype(bool)
    pairs = [(f, s) for f in range(p.utility.folds) for s in a.seeds]
    jobs = [(a.params, "real_only", f, s, "") for f, s in pairs]
    jobs += [(a.params, "full", f, s, folders[g]) for g in masks for f, s in pairs]
    t0 = time.time()
    with ProcessPoolExecutor(a.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        values = list(pool.map(arm, jobs))
    real, rest = values[:len(pairs)], values[len(pairs):]
    full = {g: rest[i * len(pairs):(i + 1) * len(pairs)] for i, g in enumerate(masks)}
    out = {"pairs": pairs, "real_only": real, "full": full, "seconds": time.time() - t0,
           "rows": {g: int(m.sum()) for g, m in masks.items()},
           "identities": {g: len(set(np.asarray(table_of[g].column("label"))[m].tolist())) for g, m in masks.items()},
           "vs_real_only": {g: stats.paired_t(real, v) for g, v in full.items()},
           "vs_audit": {g: stats.paired_t(full["audit"], v) for g, v in full.items() if g != "audit"}}
    for g in masks:
        d = out["vs_real_only"][g]
        line = f"{g}: {out['rows'][g]} rows, {out['identities'][g]} identities, vs real only {100 * d['mean']:+.2f} " \
               f"[{100 * d['ci_low']:+.2f}, {100 * d['ci_high']:+.2f}]"
        if g in out["vs_audit"]:
            e = out["vs_audit"][g]
            line += f", vs audit {100 * e['mean']:+.2f} [{100 * e['ci_low']:+.2f}, {100 * e['ci_high']:+.2f}]"
        print(line)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
