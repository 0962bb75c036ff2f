"""Synthesis: shard schema, HF loading, privacy audit, kill + resume byte identity, the flow on Dask.

One micro prior -> cold start -> RL stack per module (as tests/test_coldstart.py), then one
uninterrupted in-process run (`ref`) that the other runs must reproduce byte for byte.
"""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from rgsyn.config import load_params
from rgsyn.synth import schema
from rgsyn.synth.engine import gate
from rgsyn.synth.reader import read_shards
from rgsyn.synth.run import make_plan, shard_seed, synthesize
from tests.conftest import MICRO_GEN, ROOT, micro_params

def _params(tmp: Path, out: str, **over) -> Path:
    return micro_params(tmp, **{**MICRO_GEN, "synth.out_dir": str(tmp / out), **over})


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Micro generator stack + one uninterrupted synthesis run into tmp/ref."""
    from rgsyn.data.stage import prepare
    from rgsyn.encoder import EncoderConfig, IdentityEncoder, save_encoder
    from rgsyn.generator.coldstart import run_coldstart
    from rgsyn.generator.prior import run_prior
    from rgsyn.rl.loop import run_rl

    tmp = tmp_path_factory.mktemp("synth")
    p = load_params(_params(tmp, "ref"))
    prepare(p.data)  # from the repository root: the index holds absolute paths to tmp
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)  # anything relative goes into tmp
        t = p.reference.train
        torch.manual_seed(0)  # an untrained reference encoder: these tests need its plumbing, not its accuracy
        save_encoder(IdentityEncoder(EncoderConfig(t.backbone, 20, t.embed_dim, t.height, t.width)).eval(),
                     p.reference.out_dir)
        torch.manual_seed(2)  # an untrained validation encoder (RL's early stopping)
        save_encoder(IdentityEncoder(EncoderConfig(t.backbone, 20, t.embed_dim, t.height, t.width)).eval(),
                     p.reference.val_out_dir)
        torch.manual_seed(1)  # and an untrained auditor of its own
        save_encoder(IdentityEncoder(EncoderConfig(t.backbone, 6, t.embed_dim, t.height, t.width)).eval(),
                     p.audit.encoder)
        run_prior(p, progress=False)
        run_coldstart(p, progress=False)
        run_rl(p, progress=False)
        t0 = time.perf_counter()
        out = synthesize(p)
        out["seconds"] = time.perf_counter() - t0
    return p, tmp, out


def test_acceptance_gate():
    consistent = np.array([True, True, False, True, True])
    near = np.array([False, True, False, False, False])
    r_sem = np.array([0.9, 0.9, 0.9, 0.49, np.nan], np.float32)  # NaN: a novel identity has no floor to miss
    assert gate(consistent, near, r_sem, 0.5).tolist() == [True, False, False, False, True]


def test_shards_schema_manifest_audit_and_reading(stack, tmp_path, monkeypatch):
    p, tmp, out = stack
    ref = tmp / "ref"
    shards = schema.shard_dir(ref)  # data/ of the release folder
    man = json.loads((shards / "_manifest.json").read_text())
    assert [e["file"] for e in man["shards"]] == [schema.shard_name(i) for i in range(10)]  # 20 ids / 2 per shard
    assert man["rows"] == 60 and out["metrics"]["shards_written"] == 10
    d = pq.read_table(shards / man["shards"][0]["file"]).schema.field("features").type.list_size
    seen = []
    for e in man["shards"]:
        f = shards / e["file"]
        assert schema.sha256_file(f) == e["sha256"]
        t = pq.read_table(f)
        assert t.schema.equals(schema.arrow_schema(d)) and t.num_rows == e["rows"] == 6
        md = pq.read_metadata(f)
        assert md.row_group(0).column(0).compression == "ZSTD"
        meta = json.loads(md.metadata[b"rgsyn"])
        assert meta["synthesis_id"] == man["synthesis_id"]
        assert meta["shard_seed"] == shard_seed(p.synth.seed, e["index"])
        assert "mlflow" not in md.metadata[b"rgsyn"].decode() and json.loads(md.metadata[b"huggingface"])
        cols = t.to_pydict()
        labels = cols["label"]
        assert labels == [meta["pids"][0]] * 3 + [meta["pids"][1]] * 3  # whole identities, contiguous
        assert cols["sample_id"] == [f"{y:04d}_{k:04d}" for y in meta["pids"] for k in range(3)]
        assert [im["path"] for im in cols["image"]] == [f"{s}.png" for s in cols["sample_id"]]
        assert set(cols["run_id"]) == {man["synthesis_id"]} and set(cols["generator_ckpt"]) == {str(tmp / "rl")}
        thr = meta["audit_thresholds"]
        pix, feat = np.array(cols["copy_pixel_sim"], np.float64), np.array(cols["copy_feature_sim"], np.float64)
        assert cols["near_copy"] == ((pix > thr["pixel"]) | (feat > thr["feature"])).tolist()
        acc = gate(np.array(cols["consistent"]), np.array(cols["near_copy"]), np.array(cols["r_sem"], np.float32),
                   p.synth.sem_floor)
        assert cols["accepted"] == acc.tolist() and e["accepted"] == int(acc.sum())
        assert all(-1 <= r <= 1 for r in cols["reward"]) and all(0 <= r <= 1 for r in cols["r_sem"])
        assert all(np.isnan(cols["identity_leak_sim"]))  # augment mode: no identity-leak check
        seen += cols["sample_id"]
    assert len(set(seen)) == 60
    m = out["metrics"]
    assert m["samples"] == 60 and m["accepted"] == man["accepted"] == sum(e["accepted"] for e in man["shards"])
    assert 0 <= m["near_copy_rate"] <= 1 and 0 <= m["consistency_rate"] <= 1 and m["mode"] == "augment"
    # reading back: the release folder, or its shard folder
    ds = read_shards(ref, accepted_only=False)
    assert read_shards(shards, accepted_only=False).sample_ids == ds.sample_ids
    img, label = ds[0]
    assert len(ds) == 60 and img.dtype == torch.uint8 and img.shape == (3, 32, 16) and label == int(seen[0][:4])
    assert len(read_shards(ref)) == man["accepted"] and ds.features.shape == (60, d)
    t = pq.read_table(shards / schema.shard_name(0))  # accepted_only filters on the column
    flipped = t.set_column(t.schema.get_field_index("accepted"), "accepted",
                           pa.array([True, False, False, True, False, True]))
    pq.write_table(flipped, tmp_path / "flipped.parquet")
    assert read_shards(tmp_path / "flipped.parquet").sample_ids == [seen[0], seen[3], seen[5]]
    assert ds.images().shape == (60, 3, 32, 16) and ds.sample_ids == seen
    # Hugging Face datasets: the image column decodes to PIL
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    hf = datasets.load_dataset("parquet", data_files=str(shards / schema.shard_name(0)), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert isinstance(hf.features["image"], datasets.Image) and len(hf) == 6
    pil = hf[0]["image"]
    assert pil.size == (16, 32) and np.array_equal(np.asarray(pil).transpose(2, 0, 1), img.numpy())
    assert hf[0]["features"] == pytest.approx(ds.features[0].tolist())


def test_rerun_skips_and_stale_shards_are_rewritten(stack, tmp_path, monkeypatch):
    p, tmp, _ = stack
    monkeypatch.chdir(tmp_path)
    before = {f.name: f.read_bytes() for f in schema.shard_dir(tmp / "ref").glob("shard-*.parquet")}
    again = synthesize(p)
    assert again["metrics"]["shards_written"] == 0
    assert {f.name: f.read_bytes() for f in schema.shard_dir(tmp / "ref").glob("shard-*.parquet")} == before
    # other content params -> another synthesis id; per_id < 3 is refused with the key named
    assert make_plan(load_params(_params(tmp, "ref", **{"synth.seed": 1}))).synthesis_id != \
        make_plan(p).synthesis_id
    assert make_plan(load_params(_params(tmp, "ref", **{"synth.workers": 3}))).synthesis_id == make_plan(p).synthesis_id
    with pytest.raises(ValueError, match="synth.per_id"):
        make_plan(load_params(_params(tmp, "x", **{"synth.per_id": 2})))
    cs = make_plan(load_params(_params(tmp, "x", **{"synth.checkpoint": str(tmp / "cs")})))
    assert cs.provenance["generator_hash"] != make_plan(p).provenance["generator_hash"]
    # a shard of another synthesis is rewritten, a shard beyond the plan removed, temporaries swept
    stale = schema.shard_dir(tmp / "stale")
    stale.mkdir(parents=True)
    for name in (schema.shard_name(0), schema.shard_name(7)):
        (stale / name).write_bytes(before[name])
    (stale / ".shard-00001.parquet.1.x.tmp").write_bytes(b"half a shard")
    q = load_params(_params(tmp, "stale", **{"synth.seed": 1, "synth.num_ids": 4}))
    res = synthesize(q)["metrics"]
    assert res["shards_written"] == 2 and res["removed_stray"] == 1
    assert sorted(f.name for f in stale.iterdir()) == ["_manifest.json", schema.shard_name(0), schema.shard_name(1)]
    assert pq.read_table(stale / schema.shard_name(0)).column("run_id")[0].as_py() == make_plan(q).synthesis_id


# The child is killed (SIGKILL, no cleanup) at a fixed point: when the fourth shard is about to be renamed
# into place, so three shards are complete, the fourth is a temporary file and no manifest exists.
KILL_AT_FOURTH_SHARD = """
import os, runpy, signal, sys
import torch
torch.set_num_threads(int(sys.argv[2]))  # the resuming process's count: float sums depend on it
renamed, real_replace = [], os.replace

def replace(src, dst, *a, **kw):
    if os.path.basename(str(dst)).startswith("shard-"):
        if len(renamed) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        renamed.append(dst)
    return real_replace(src, dst, *a, **kw)

os.replace = replace
sys.argv = ["rgsyn.synth", sys.argv[1]]
runpy.run_module("rgsyn.synth", run_name="__main__")
"""


def test_kill_mid_run_then_resume_gives_the_uninterrupted_bytes(stack, tmp_path, monkeypatch):
    p, tmp, _ = stack
    params = _params(tmp, "killed")
    out = schema.shard_dir(tmp / "killed")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    (tmp_path / "kill.py").write_text(KILL_AT_FOURTH_SHARD)
    proc = subprocess.run([sys.executable, str(tmp_path / "kill.py"), str(params), str(torch.get_num_threads())],
                          cwd=tmp_path, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    done = sorted(f.name for f in out.glob("shard-*.parquet"))
    assert done == [schema.shard_name(i) for i in range(3)] and not (out / "_manifest.json").exists()
    assert [f.name.split(".")[1] for f in out.glob(".shard-*.tmp")] == ["shard-00003"]  # killed mid-write
    monkeypatch.chdir(tmp_path)
    synthesize(load_params(params))  # the rerun (in-process: a second interpreter start costs ~10 s)
    man = json.loads((out / "_manifest.json").read_text())
    ref = json.loads((schema.shard_dir(tmp / "ref") / "_manifest.json").read_text())
    names = [e["file"] for e in man["shards"]]
    assert names == sorted(set(names)) == [e["file"] for e in ref["shards"]]  # every shard once
    assert sorted(f.name for f in out.glob("*")) == sorted(names + ["_manifest.json"])  # no temporaries left
    for e, er in zip(man["shards"], ref["shards"]):
        assert e["rows"] == er["rows"] and e["sha256"] == er["sha256"] == schema.sha256_file(out / e["file"])
        assert (out / e["file"]).read_bytes() == (schema.shard_dir(tmp / "ref") / e["file"]).read_bytes()
    adopted = [e for e in man["shards"] if e["file"] in done]
    assert len(adopted) == 3 and all("adopted_by" in e["written_by"] for e in adopted)


def test_flow_on_a_two_worker_dask_cluster(stack, prefect_harness, tmp_path, monkeypatch):
    """The flow maps shard tasks over a 2-worker Dask cluster reached by address (the many-GPU setup).

    The workers are threads of this process behind a real TCP scheduler (task inputs are pickled over
    the wire): process workers would each import torch + diffusers + timm (~30 s on 2 busy cores)."""
    from distributed import LocalCluster

    from flows.synthesize import main, task_runner

    p, tmp, _ = stack
    local = task_runner(load_params(_params(tmp, "dask", **{"synth.task_runner": "dask", "synth.workers": 3})).synth)
    assert local.address is None
    assert local.cluster_kwargs == {"n_workers": 3, "threads_per_worker": 1, "processes": True}
    threads = task_runner(load_params(_params(tmp, "dask", **{"synth.workers": 3})).synth)
    assert type(threads).__name__ == "ThreadPoolTaskRunner" and threads._max_workers == 3
    monkeypatch.chdir(tmp_path)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                      dashboard_address=None) as cluster:
        params = _params(tmp, "dask", **{"synth.task_runner": "dask", "synth.dask_address": cluster.scheduler_address,
                                         "tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                                         "synth.metrics": str(tmp / "metrics/synth.json")})
        out = main(str(params))
        executed = [w.state.executed_count for w in cluster.workers.values()]
    assert len(executed) == 2 and min(executed) >= 1 and sum(executed) >= 10  # both workers ran shard tasks
    man = json.loads((tmp / "dask/data/_manifest.json").read_text())
    ref = json.loads((tmp / "ref/data/_manifest.json").read_text())
    assert [(e["file"], e["sha256"]) for e in man["shards"]] == [(e["file"], e["sha256"]) for e in ref["shards"]]
    ids = {e["written_by"]["mlflow_run_id"] for e in man["shards"]}
    assert len(ids) == 1 and ids != {""} and man["shards"][0]["written_by"]["prefect_flow_run_id"]
    assert json.loads((tmp / "metrics/synth.json").read_text()) == json.loads(json.dumps(out["metrics"]))


def _card(path: Path) -> tuple[dict, str]:
    """(YAML header, body) of a dataset card."""
    import yaml

    head, sep, body = path.read_text().removeprefix("---\n").partition("\n---\n")
    assert sep, f"{path}: no YAML header"
    return yaml.safe_load(head), body


@contextlib.contextmanager
def card_complaints():
    """The messages of the `datasets` logger and of `warnings` about a card's dataset_info, while the
    block runs."""
    import logging
    import warnings

    seen = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("datasets")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            complaints = []
            yield complaints
    finally:
        logger.removeHandler(handler)
    complaints += [m for m in seen + [str(w.message) for w in caught] if "dataset_info" in m or "splits" in m]


def novel_gate_agrees_with_report(p, n: dict):
    """The novel shards' `accepted` and `identity_leak_sim` are the 1:N rule on the auditor features the
    report recomputes, and the report finds no leak in the release."""
    from rgsyn.generator.coldstart import image_size
    from rgsyn.privacy.audit import Auditor
    from rgsyn.privacy.novel import leak_gate
    from rgsyn.privacy.run import gate_features
    from rgsyn.synth.run import load_generator

    bundle, pids = load_generator(p.synth.checkpoint)
    auditor = Auditor.build(p, list(pids), image_size(bundle))
    sh = read_shards(p.audit.novel_out_dir, accepted_only=False)
    col = lambda c: sh.table.column(c).to_numpy(zero_copy_only=False)  # noqa: E731
    cand = gate(col("consistent"), col("near_copy"), col("r_sem"), p.synth.sem_floor)
    sim, released = leak_gate(gate_features(auditor, p.audit.novel_out_dir), sh.labels, cand, auditor.protos,
                              auditor.identity_threshold)
    assert released.tolist() == col("accepted").tolist()
    assert np.array_equal(sim, col("identity_leak_sim"), equal_nan=True)
    assert n["leaked_kept"] == 0 and n["leak_rate"] == 0.0 and n["kept"] == n["screened"] - n["leaked"]
    assert n["generated"] == 2 and n["pre_gate_rate"] == (n["leaked"] / n["screened"] if n["screened"] else 0.0)


def test_privacy_stage_writes_release_cards_that_load_and_carry_the_report(stack, tmp_path, monkeypatch):
    """The privacy stage on the micro release: both folders get a Hugging Face card whose YAML parses,
    names every shard row, declares the shards' features, and carries the audit's figures as written to
    the report; `datasets.load_dataset(<folder>)` reads each folder by itself."""
    import dataclasses

    import datasets

    from rgsyn.privacy.run import run_privacy
    from rgsyn.synth import card

    p, tmp, _ = stack
    monkeypatch.chdir(tmp)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("DVC_STAGE", raising=False)
    out = run_privacy(p, progress=False)
    report = json.loads(Path(f"{p.audit.report}.json").read_text())
    for release, mode in ((tmp / "ref", "augment"), (Path(p.audit.novel_out_dir), "novel")):
        assert str(release / card.CARD) in out["files"]
        meta, body = _card(release / card.CARD)
        man = json.loads((schema.shard_dir(release) / schema.MANIFEST).read_text())
        r = meta["rgsyn"]
        assert r["mode"] == mode and r["rows"] == man["rows"] and r["accepted"] == man["accepted"]
        assert r["provenance"] == man["provenance"] and r["synthesis_id"] == man["synthesis_id"]
        assert r["privacy_audit"] == {"report": f"{p.audit.report}.json", **report}  # every figure, as written
        assert meta["license"] == p.release.license and meta["size_categories"] == ["n<1K"]
        assert r["dvc_stages"] == {} and "Written outside `dvc repro`" in body
        assert r["source_dataset"]["train"]["ids"] == 20 and "No image of the source dataset" in body
        assert r["generator"]["base_dit"]["path"] == p.coldstart.pretrained
        assert r["generator"]["hash"] == man["provenance"]["generator_hash"]  # hashed as the synthesis hashes it
        chain = [p.synth.checkpoint, p.rl.coldstart, p.coldstart.pretrained]
        assert [c["path"] for c in r["generator"]["chain"]] == chain
        with card_complaints() as complaints:
            ds = datasets.load_dataset(str(release), split="train", cache_dir=str(tmp_path / "hf"))
        assert complaints == []  # `datasets` takes the card's dataset_info whole
        split = meta["dataset_info"]["splits"][0]
        assert len(ds) == man["rows"] == split["num_examples"]
        assert ds.info.splits["train"].num_bytes == split["num_bytes"] == meta["dataset_info"]["dataset_size"]
        assert ds.features == datasets.Features._from_yaml_list(meta["dataset_info"]["features"])
        assert ds.features == datasets.Features.from_arrow_schema(
            pq.read_schema(schema.shard_dir(release) / man["shards"][0]["file"]))
        assert sum(ds["accepted"]) == r["accepted"]
        assert sorted(ds["sample_id"]) == sorted(read_shards(release, accepted_only=False).sample_ids)
    assert f"{100 * report['copy']['rate']:.1f} %" in _card(tmp / "ref" / card.CARD)[1]
    novel_gate_agrees_with_report(p, report["novel"])
    other = dataclasses.replace(p, synth=dataclasses.replace(p.synth, seed=7))
    with pytest.raises(ValueError, match="params_hash .* rerun the synthesize stage"):
        card.card_metadata(other, tmp / "ref", report)
    other = dataclasses.replace(p, rl=dataclasses.replace(p.rl, tau=0.5))
    with pytest.raises(ValueError, match="reward_hash .* rerun the synthesize stage"):
        card.card_metadata(other, tmp / "ref", report)
    (tmp / "ref" / "shard-00000.parquet").write_bytes(b"a file the card would not describe")
    try:
        with pytest.raises(ValueError, match=r"\['shard-00000.parquet'\] are not part of the release"):
            card.card_metadata(p, tmp / "ref", report)
    finally:
        (tmp / "ref" / "shard-00000.parquet").unlink()


def test_card_takes_the_stage_hashes_from_the_running_pipelines_lock(tmp_path):
    from rgsyn.synth.card import dvc_stage_hashes, size_category

    lock = {"schema": "2.0", "stages": {
        "synthesize": {"outs": [{"path": "data/face/synthetic/data", "md5": "abc.dir"}]},
        "privacy": {"outs": [{"path": "reports/face/privacy.json", "md5": "def"}]},
        "rl": {"outs": [{"path": "checkpoints/face/rl", "md5": "0123.dir"}]}}}
    (tmp_path / "face").mkdir()
    (tmp_path / "face/dvc.lock").write_text(json.dumps(lock))  # JSON is YAML
    env = {"DVC_STAGE": "face/dvc.yaml:privacy", "DVC_ROOT": str(tmp_path)}
    assert dvc_stage_hashes(env) == {"rl": {"checkpoints/face/rl": "0123.dir"},
                                     "synthesize": {"data/face/synthetic/data": "abc.dir"}}
    assert dvc_stage_hashes({"DVC_STAGE": "privacy", "DVC_ROOT": str(tmp_path)}) == {}  # no root dvc.lock
    assert dvc_stage_hashes({}) == {}
    assert [size_category(n) for n in (999, 1000, 12_000, 10**9)] == ["n<1K", "1K<n<10K", "10K<n<100K", "n>100M"]
