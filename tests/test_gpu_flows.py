"""GPU orchestration without a GPU: the per-GPU Dask cluster spec, Prefect's `gpu` tag limit, the tags.

CUDA is faked by monkeypatching torch.cuda.is_available / device_count; no CUDA call is made and no
cluster is started (the task runner only holds the cluster's class and kwargs until a flow enters it).
"""
import dataclasses
import sys
import types

import dask
import pytest
import torch

import flows.common as common
from rgsyn.config import load_params, write_params
from tests.conftest import ROOT


@pytest.fixture
def gpus(monkeypatch):
    """fake(n): this process sees n CUDA devices (0: none)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def fake(n: int):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    return fake


@pytest.fixture
def no_dask_cuda(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # import dask_cuda raises ImportError


def synth_params(**kw):
    sp = load_params(ROOT / "params.yaml").synth
    return dataclasses.replace(sp, **{"task_runner": "dask", "dask_address": "", "device": "auto", **kw})


def test_dask_runner_pins_one_worker_to_each_gpu(gpus, no_dask_cuda):
    from distributed import Nanny

    from flows.synthesize import task_runner

    gpus(2)
    runner = task_runner(synth_params(workers=5))
    assert runner.cluster_class == "distributed.SpecCluster"
    workers = runner.cluster_kwargs["workers"]
    assert len(workers) == 2  # one per GPU, whatever synth.workers says
    for i, spec in enumerate(workers.values()):
        assert spec["cls"] is Nanny
        assert spec["options"]["nthreads"] == 1
        assert spec["options"]["env"] == {"CUDA_VISIBLE_DEVICES": str(i)}
    # the nanny's eager malloc trim stays off on GPU workers too
    assert dask.config.get("distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_") is None


def test_gpu_workers_take_the_gpus_this_process_sees(gpus, no_dask_cuda, monkeypatch):
    gpus(2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    _, kwargs = common.gpu_cluster(common.per_gpu_workers("cuda"))
    assert [w["options"]["env"]["CUDA_VISIBLE_DEVICES"] for w in kwargs["workers"].values()] == ["3", "5"]


def test_dask_cuda_is_used_when_installed(gpus, monkeypatch):
    gpus(2)
    monkeypatch.setitem(sys.modules, "dask_cuda", types.ModuleType("dask_cuda"))
    cls, kwargs = common.gpu_cluster(2)
    assert cls == "dask_cuda.LocalCUDACluster"
    assert kwargs == {"n_workers": 2, "threads_per_worker": 1, "CUDA_VISIBLE_DEVICES": "0,1"}


@pytest.mark.parametrize("n, device", [(0, "auto"), (0, "cpu"), (2, "cpu"), (2, "cuda:1")])
def test_without_per_gpu_workers_the_local_cluster_stays(gpus, n, device):
    from flows.synthesize import task_runner

    gpus(n)
    runner = task_runner(synth_params(workers=3, device=device))
    assert runner.cluster_class is None
    assert runner.cluster_kwargs == {"n_workers": 3, "threads_per_worker": 1, "processes": True}


def test_a_scheduler_address_wins(gpus):
    from flows.synthesize import task_runner

    gpus(2)
    runner = task_runner(synth_params(dask_address="tcp://127.0.0.1:8786"))
    assert runner.address == "tcp://127.0.0.1:8786" and runner.cluster_kwargs == {}


class Client:
    def __init__(self):
        self.calls = []

    def create_concurrency_limit(self, tag, concurrency_limit):
        self.calls.append((tag, concurrency_limit))


def test_gpu_limit_equals_the_visible_gpus(gpus):
    gpus(3)
    c = Client()
    assert common.ensure_gpu_limit("cpu", "auto", client=c) == 3
    assert c.calls == [("gpu", 3)]


def test_no_gpu_limit_on_the_cpu(gpus):
    gpus(0)
    c = Client()
    assert common.ensure_gpu_limit("auto", "cpu", client=c) == 0
    assert c.calls == []


def test_gpu_limit_is_created_in_prefect(prefect_harness, gpus):
    from prefect.client.orchestration import get_client

    try:
        gpus(2)
        assert common.ensure_gpu_limit("cuda") == 2
        with get_client(sync_client=True) as c:
            assert c.read_concurrency_limit_by_tag("gpu").concurrency_limit == 2
        gpus(1)  # an upsert: the limit follows the GPUs
        assert common.ensure_gpu_limit("auto") == 1
        with get_client(sync_client=True) as c:
            assert c.read_concurrency_limit_by_tag("gpu").concurrency_limit == 1
    finally:
        with get_client(sync_client=True) as c:  # the harness is shared: leave no limit behind
            c.delete_concurrency_limit_by_tag("gpu")


def test_gpu_tasks_carry_the_gpu_tag():
    from tasks import auditor, backbone, generator, prior, privacy, rl, synth, train

    gpu = [auditor.train_auditor, backbone.train_backbone, generator.coldstart, prior.train_prior, privacy.audit,
           rl.rl_finetune, synth.shard, train.train_seed]
    assert all(common.GPU_TAG in t.tags for t in gpu)
    assert common.GPU_TAG not in synth.plan.tags and common.GPU_TAG not in train.write_metrics.tags


def test_stage_mains_and_the_pipeline_set_the_limit_from_their_device(tmp_path, monkeypatch):
    """Each stage flow (through run_stage) asks for the limit with its own section's device before any of
    its work runs; the flow bodies run as plain functions here and stop at that call."""
    import copy
    import importlib

    class Asked(Exception):
        pass

    def ask(*d):
        seen.append(d)
        raise Asked

    devices = {"prior.device": "dev-prior", "auditor.train.device": "dev-auditor",
               "backbone.train.device": "dev-backbone", "reference.train.device": "dev-ref",
               "coldstart.device": "dev-cs", "rl.device": "dev-rl", "synth.device": "dev-synth",
               "downstream.train.device": "dev-down"}
    path = str(write_params(ROOT / "params.yaml", devices, tmp_path / "params.yaml"))
    seen = []
    want = {"data": ("data_flow", ()), "prior": ("prior_flow", ("dev-prior",)),
            "auditor": ("auditor_flow", ("dev-auditor",)), "backbone": ("backbone_flow", ("dev-backbone",)),
            "coldstart": ("coldstart_flow", ("dev-cs",)),
            "rl": ("rl_flow", ("dev-rl",)), "privacy": ("privacy_flow", ("dev-synth",)),
            "synthesize": ("synthesize_flow", ("dev-synth",)), "utility": ("utility_flow", ("dev-down",)),
            "reference": ("", ("dev-ref",)), "downstream": ("", ("dev-down",)),
            "ablation": ("ablation_flow", ("dev-rl", "dev-synth", "dev-down"))}
    monkeypatch.setattr(common, "ensure_gpu_limit", ask)

    def plain(f):  # the flow's own function, callable as the flow and through with_options
        stub = lambda *a: f.fn(*a)  # noqa: E731
        stub.with_options = lambda **kw: stub
        return stub

    train = importlib.import_module("flows.train")
    monkeypatch.setattr(train, "train_flow", plain(train.train_flow))
    saved = copy.deepcopy(dask.config.config)
    try:
        for name, (flow, device) in want.items():
            mod = importlib.import_module(f"flows.{name}")
            if flow:
                monkeypatch.setattr(mod, flow, plain(getattr(mod, flow)))
            seen.clear()
            with pytest.raises(Asked):
                mod.main(path)
            assert seen == [device], name
    finally:  # the ablation's and utility's Dask runners set dask's global config; leave it as it was
        dask.config.config.clear()
        dask.config.config.update(saved)

    import flows.pipeline as pipeline

    monkeypatch.setattr(pipeline, "ensure_gpu_limit", lambda *d: seen.append(d))
    monkeypatch.setattr(importlib.import_module("flows.data"), "main", lambda params_path: {"summary": {}})
    seen.clear()
    pipeline.pipeline_flow.fn(path, stages=["data"])
    assert seen == [tuple(devices.values())]
