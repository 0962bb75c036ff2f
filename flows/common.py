"""What several flows share: the Dask task runner and the stage's MLflow run + metrics file."""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

from rgsyn import tracking
from rgsyn.config import to_dict


def dask_runner(workers: int, address: str = ""):
    """prefect-dask's runner: the scheduler at `address`, or a LocalCluster of `workers` single-threaded
    processes. Dask's nanny would start workers with MALLOC_TRIM_THRESHOLD_=65536 (memory returned to
    the OS eagerly), which makes torch's CPU allocator pay page faults on every large tensor (a torch
    training in such a worker ran about 1.8x slower, docs/orchestration.md); the key is dropped."""
    import dask
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})


@contextmanager
def stage_run(p, stage: str, section):
    """The stage's MLflow run (params = its params section) -> the tracking.Run handle."""
    with tracking.start_run(p.tracking, stage, to_dict(section), stage=stage) as run:
        yield run


def write_json(path: str | Path, obj) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=str))
    return path
