"""Synthesis: shard schema, HF loading, privacy audit, kill + resume byte identity, the flow on Dask.

One micro prior -> cold start -> RL stack per module (as tests/test_coldstart.py), then one
uninterrupted in-process run (`ref`) that the other runs must reproduce byte for byte.
"""
import json
import os
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
from rgsyn.synth import read_shards, schema
from rgsyn.synth.audit import impostor_stats, nearest_real
from rgsyn.synth.engine import gate
from rgsyn.synth.run import make_plan, shard_seed, synthesize
from tests.conftest import ROOT, micro_params
from tests.test_coldstart import MICRO

SYNTH = {"synth.per_id": 3, "synth.ids_per_shard": 2, "synth.batch": 4, "synth.sample_steps": 6,
         "synth.guidance": 2.0, "synth.sem_floor": 0.5, "synth.fmr": 0.01, "synth.device": "cpu"}


def _params(tmp: Path, out: str, **over) -> Path:
    return micro_params(tmp, **{"prior.out_dir": str(tmp / "prior"), "prior.ckpt_dir": str(tmp / "prior_state"),
                                "coldstart.pretrained": str(tmp / "prior"), "coldstart.out_dir": str(tmp / "cs"),
                                "rl.coldstart": str(tmp / "cs"), "rl.out_dir": str(tmp / "rl"),
                                "rl.bank": str(tmp / "bank.parquet"), "synth.checkpoint": str(tmp / "rl"),
                                "synth.out_dir": str(tmp / out), **MICRO, **SYNTH, **over})


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
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)  # reports/ of every stage go into tmp
        prepare(p.data)
        t = p.reference.train
        torch.manual_seed(0)  # an untrained reference encoder: these tests need its plumbing, not its accuracy
        save_encoder(IdentityEncoder(EncoderConfig(t.backbone, 20, t.embed_dim, t.height, t.width)).eval(),
                     p.reference.out_dir)
        run_prior(p, progress=False)
        run_coldstart(p, progress=False)
        run_rl(p, progress=False)
        t0 = time.perf_counter()
        out = synthesize(p)
        out["seconds"] = time.perf_counter() - t0
    return p, tmp, out


def test_impostor_threshold_is_numpys_quantile_over_different_id_pairs():
    g = torch.Generator().manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(61, 8, generator=g), dim=1)
    pids = torch.randint(0, 7, (61,), generator=g)
    sim = (feats @ feats.t()).double().numpy()
    i, j = np.triu_indices(61, 1)
    imp = sim[i, j][pids.numpy()[i] != pids.numpy()[j]]
    for fmr in (0.001, 0.05, 0.3):
        st = impostor_stats(feats, pids, fmr, chunk=7)  # chunks smaller than the set: the top-k merge path
        assert st["pairs"] == len(imp) and sum(st["hist"]) == len(imp)
        assert st["threshold"] == pytest.approx(np.quantile(imp, 1 - fmr), abs=1e-6)
    assert st["mean"] == pytest.approx(imp.mean(), abs=1e-6) and st["std"] == pytest.approx(imp.std(), abs=1e-6)
    gen = torch.randn(9, 8, generator=g)
    s, a = nearest_real(gen, feats, chunk=5)
    brute = torch.nn.functional.normalize(gen, dim=1) @ feats.t()
    torch.testing.assert_close(s, brute.max(1).values)
    assert torch.equal(a, brute.argmax(1))
    with pytest.raises(ValueError, match="synth.fmr"):
        impostor_stats(feats, pids, 0.0)


def test_acceptance_gate():
    nn = np.array([0.5, 0.7, 0.7000001, 0.1], np.float32)
    r_sem = np.array([0.9, 0.9, 0.9, 0.49], np.float32)
    thr = float(np.float32(0.7))  # a sample exactly at the threshold is not a leak
    assert gate(nn, r_sem, thr, 0.5).tolist() == [True, True, False, False]


def test_shards_schema_manifest_audit_and_reading(stack, tmp_path, monkeypatch):
    p, tmp, out = stack
    ref = tmp / "ref"
    man = json.loads((ref / "_manifest.json").read_text())
    assert [e["file"] for e in man["shards"]] == [schema.shard_name(i) for i in range(10)]  # 20 ids / 2 per shard
    assert man["rows"] == 60 and out["metrics"]["shards_written"] == 10
    d = man["feature_dim"]
    plan_threshold = man["threshold"]
    seen = []
    for e in man["shards"]:
        f = ref / e["file"]
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
        acc = gate(np.array(cols["nn_real_sim"], np.float32), np.array(cols["r_sem"], np.float32), plan_threshold,
                   p.synth.sem_floor)
        assert cols["accepted"] == acc.tolist() and e["accepted"] == int(acc.sum())
        assert all(-1 <= r <= 1 for r in cols["reward"]) and all(0 <= r <= 1 for r in cols["r_sem"])
        seen += cols["sample_id"]
    assert len(set(seen)) == 60
    # audit report + histogram (finalize wrote them into the cwd of the run: tmp)
    rep = json.loads((tmp / "reports/synth_audit.json").read_text())
    assert rep["samples"] == 60 and rep["threshold"] == plan_threshold and rep["fmr"] == 0.01
    assert 0 <= rep["leakage_rate"] <= 1 and rep["impostor_pairs"] > 0 and (tmp / "reports/synth_audit.png").exists()
    assert rep["accepted"] == man["accepted"] == sum(e["accepted"] for e in man["shards"])
    # reading back
    ds = read_shards(ref, accepted_only=False)
    img, label = ds[0]
    assert len(ds) == 60 and img.dtype == torch.uint8 and img.shape == (3, 32, 16) and label == int(seen[0][:4])
    assert len(read_shards(ref)) == man["accepted"] and ds.features.shape == (60, d)
    t = pq.read_table(ref / schema.shard_name(0))  # accepted_only filters on the column
    flipped = t.set_column(t.schema.get_field_index("accepted"), "accepted",
                           pa.array([True, False, False, True, False, True]))
    pq.write_table(flipped, tmp_path / "flipped.parquet")
    assert read_shards(tmp_path / "flipped.parquet").sample_ids == [seen[0], seen[3], seen[5]]
    assert ds.images().shape == (60, 3, 32, 16) and ds.sample_ids == seen
    # Hugging Face datasets: the image column decodes to PIL
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    hf = datasets.load_dataset("parquet", data_files=str(ref / schema.shard_name(0)), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert isinstance(hf.features["image"], datasets.Image) and len(hf) == 6
    pil = hf[0]["image"]
    assert pil.size == (16, 32) and np.array_equal(np.asarray(pil).transpose(2, 0, 1), img.numpy())
    assert hf[0]["features"] == pytest.approx(ds.features[0].tolist())


def test_rerun_skips_and_stale_shards_are_rewritten(stack, tmp_path, monkeypatch):
    p, tmp, _ = stack
    monkeypatch.chdir(tmp_path)
    before = {f.name: f.read_bytes() for f in (tmp / "ref").glob("shard-*.parquet")}
    again = synthesize(p)
    assert again["metrics"]["shards_written"] == 0
    assert {f.name: f.read_bytes() for f in (tmp / "ref").glob("shard-*.parquet")} == before
    # other content params -> another synthesis id; per_id < 3 is refused with the key named
    assert make_plan(load_params(_params(tmp, "ref", **{"synth.seed": 1}))).synthesis_id != \
        make_plan(p).synthesis_id
    assert make_plan(load_params(_params(tmp, "ref", **{"synth.workers": 3}))).synthesis_id == make_plan(p).synthesis_id
    with pytest.raises(ValueError, match="synth.per_id"):
        make_plan(load_params(_params(tmp, "x", **{"synth.per_id": 2})))
    cs = make_plan(load_params(_params(tmp, "x", **{"synth.checkpoint": str(tmp / "cs")})))
    assert cs.provenance["generator_hash"] != make_plan(p).provenance["generator_hash"]
    # a shard of another synthesis is rewritten, a shard beyond the plan removed, temporaries swept
    stale = tmp / "stale"
    stale.mkdir()
    for name in (schema.shard_name(0), schema.shard_name(7)):
        (stale / name).write_bytes(before[name])
    (stale / ".shard-00001.parquet.1.x.tmp").write_bytes(b"half a shard")
    q = load_params(_params(tmp, "stale", **{"synth.seed": 1, "synth.num_ids": 4}))
    res = synthesize(q)["metrics"]
    assert res["shards_written"] == 2 and res["removed_stray"] == 1
    assert sorted(f.name for f in stale.iterdir()) == ["_manifest.json", schema.shard_name(0), schema.shard_name(1)]
    assert pq.read_table(stale / schema.shard_name(0)).column("run_id")[0].as_py() == make_plan(q).synthesis_id


def test_kill_mid_run_then_resume_gives_the_uninterrupted_bytes(stack, tmp_path, monkeypatch):
    p, tmp, _ = stack
    params = _params(tmp, "killed")
    out = tmp / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "rgsyn.synth", str(params)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not list(out.glob("shard-*.parquet")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.005)
        proc.kill()
    finally:
        proc.wait()
    done = sorted(f.name for f in out.glob("shard-*.parquet"))
    assert not (out / "_manifest.json").exists() and 1 <= len(done) < 10, done  # really interrupted
    monkeypatch.chdir(tmp_path)
    synthesize(load_params(params))  # the rerun (in-process: a second interpreter start costs ~10 s)
    man = json.loads((out / "_manifest.json").read_text())
    ref = json.loads((tmp / "ref/_manifest.json").read_text())
    names = [e["file"] for e in man["shards"]]
    assert names == sorted(set(names)) == [e["file"] for e in ref["shards"]]  # every shard once
    assert sorted(f.name for f in out.glob("*")) == sorted(names + ["_manifest.json"])  # no temporaries left
    for e, er in zip(man["shards"], ref["shards"]):
        assert e["rows"] == er["rows"] and e["sha256"] == er["sha256"] == schema.sha256_file(out / e["file"])
        assert (out / e["file"]).read_bytes() == (tmp / "ref" / e["file"]).read_bytes()
    adopted = [e for e in man["shards"] if e["file"] in done]
    assert all("adopted_by" in e["written_by"] for e in adopted)


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
                                         "tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
        out = main(str(params))
        executed = [w.state.executed_count for w in cluster.workers.values()]
    assert len(executed) == 2 and min(executed) >= 1 and sum(executed) >= 10  # both workers ran shard tasks
    man = json.loads((tmp / "dask/_manifest.json").read_text())
    ref = json.loads((tmp / "ref/_manifest.json").read_text())
    assert [(e["file"], e["sha256"]) for e in man["shards"]] == [(e["file"], e["sha256"]) for e in ref["shards"]]
    ids = {e["written_by"]["mlflow_run_id"] for e in man["shards"]}
    assert len(ids) == 1 and ids != {""} and man["shards"][0]["written_by"]["prefect_flow_run_id"]
    assert json.loads((tmp_path / "metrics/synth.json").read_text()) == out["metrics"]
    assert (tmp_path / "reports/synth_audit.json").exists() and (tmp_path / "reports/synth_audit.png").exists()
