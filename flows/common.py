"""What the flows share: `run_stage` (the gpu limit, the MLflow run, its numbers, artifacts and the
metrics file of every stage), the Dask task runner (one worker per GPU on CUDA) and Prefect's `gpu`
tag concurrency limit."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from rgsyn import tracking
from rgsyn.config import flatten, to_dict


GPU_TAG = "gpu"  # the tag of every task that computes on the GPU (tasks/*.py)


def uses_cuda(device: str) -> bool:
    """Whether a stage whose params say `device` (cpu | cuda[:i] | auto) computes on a GPU."""
    from rgsyn.devices import resolve_device

    return resolve_device(device).type == "cuda"


def per_gpu_workers(device: str) -> int:
    """Dask workers for a stage on `device`: one per visible GPU for `cuda` and `auto` on a CUDA machine,
    0 otherwise (the CPU's LocalCluster; a named `cuda:i` is one GPU that every worker shares)."""
    import torch

    return torch.cuda.device_count() if device in ("cuda", "auto") and uses_cuda(device) else 0


def gpu_cluster(n: int) -> tuple[str, dict]:
    """(cluster class, its kwargs) of one single-threaded worker per GPU, each seeing only its own GPU
    through CUDA_VISIBLE_DEVICES, so `cuda` inside worker i is GPU i and no two shards share a GPU.
    dask-cuda's LocalCUDACluster when installed (it pins the same way and sets up each worker's CUDA
    context); else a distributed.SpecCluster of nannies. The GPU ids are the entries of this process's
    CUDA_VISIBLE_DEVICES when set (ids or UUIDs), else 0..n-1."""
    import os

    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    ids = (visible or [str(i) for i in range(n)])[:n]
    try:
        import dask_cuda  # noqa: F401
    except ImportError:
        from distributed import Nanny, Scheduler

        workers = {f"gpu-{i}": {"cls": Nanny, "options": {"nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": gpu}}}
                   for i, gpu in enumerate(ids)}
        return "distributed.SpecCluster", {"workers": workers,
                                           "scheduler": {"cls": Scheduler, "options": {"dashboard_address": ":8787"}}}
    return "dask_cuda.LocalCUDACluster", {"n_workers": len(ids), "threads_per_worker": 1,
                                          "CUDA_VISIBLE_DEVICES": ",".join(ids)}


def task_runner(workers: int):
    """`workers` tasks at once: one thread for 1 (the tasks run one after another: concurrent threads
    would share one process's torch state, forward-mode AD levels included), else dask_runner's
    single-threaded worker processes."""
    if workers <= 1:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=1)
    return dask_runner(workers)


def dask_runner(workers: int, address: str = "", gpus: int = 0):
    """prefect-dask's runner: the scheduler at `address`; else with `gpus` one worker per GPU
    (gpu_cluster), else a LocalCluster of `workers` single-threaded processes. Dask's nanny would start
    workers with MALLOC_TRIM_THRESHOLD_=65536 (memory returned to the OS eagerly), which can make torch's
    CPU allocator pay page faults on large tensors (measured in docs/orchestration.md); the key is
    dropped for every nanny this process starts, so workers allocate like any other process."""
    import dask
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
    if gpus:
        cls, kwargs = gpu_cluster(gpus)
        return DaskTaskRunner(cluster_class=cls, cluster_kwargs=kwargs)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})


def stage_devices(p) -> list[str]:
    """The `device` of every stage section of a Params (what the pipeline may put on a GPU)."""
    return [p.prior.device, p.auditor.train.device, p.backbone.train.device, p.reference.train.device,
            p.coldstart.device, p.rl.device, p.synth.device, p.downstream.train.device]


def ensure_gpu_limit(*devices: str, client=None) -> int:
    """Make Prefect's tag concurrency limit `gpu` equal the visible GPUs when any of `devices` is CUDA.

    Tasks tagged `gpu` then hold at most one GPU's worth of slots each, whichever flows run them side by
    side (a deployment run beside `dvc repro`, the ablation's rungs beside the pipeline), and the Prefect
    UI shows them waiting for a slot instead of failing out of memory. Prefect's create is an upsert:
    calling it at every stage start keeps the limit right when the GPUs change. On the CPU nothing is
    set (no limit: CPU tasks queue on their task runner's workers). `client`: a Prefect client to use
    (default: a sync client of the configured API). -> the limit, 0 when none was set."""
    if not any(uses_cuda(d) for d in devices):
        return 0
    import torch

    n = torch.cuda.device_count()
    if client is not None:
        client.create_concurrency_limit(tag=GPU_TAG, concurrency_limit=n)
        return n
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        c.create_concurrency_limit(tag=GPU_TAG, concurrency_limit=n)
    return n


def run_stage(p, stage: str, section, work: Callable, *, devices=(), numbers: Callable = lambda out: {},
              files: Callable = lambda out: [], folder: str | None = None, metrics_file: str = "",
              metrics: Callable = lambda out: out):
    """What every stage flow does around its work, once: Prefect's `gpu` limit for the stage's `devices`
    (on CUDA, before any task runs), the stage's MLflow run (params = its `section`) around
    `work(run) -> result`, then from the result: `metrics(result)` as the stage's metrics file
    `metrics_file` when one is named, `numbers(result)` ({prefix: nested dict}) as MLflow metrics
    `<prefix>/<key path>`, and the files `files(result)` as artifacts (under `folder`). -> result"""
    ensure_gpu_limit(*devices)
    with tracking.start_run(p.tracking, stage, to_dict(section), stage=stage) as run:
        out = work(run)
        if metrics_file:  # first: it may be one of the artifacts
            write_json(metrics_file, metrics(out))
        for prefix, d in numbers(out).items():
            run.log({k: v for k, v in flatten(d, f"{prefix}/", "/").items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)})
        for f in files(out):
            run.log_artifact(f, folder)
    return out


def write_json(path: str | Path, obj) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=str))
    return path
