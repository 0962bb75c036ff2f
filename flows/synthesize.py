"""`synthesize` stage: python -m flows.synthesize [params.yaml]

Writes synth.out_dir/data (shard-*.parquet + _manifest.json) and synth.metrics (counts, accept, near-copy
and consistency rates). One Prefect task per shard, mapped over the task runner that synth.task_runner
names: threads, or Dask: the scheduler at synth.dask_address, else on a CUDA machine one
single-threaded worker per GPU (each pinned to its GPU), else a LocalCluster of synth.workers
processes. On CUDA the shard tasks (tag `gpu`) also hold Prefect's `gpu` concurrency limit.
"""
import sys

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from flows.common import dask_runner, per_gpu_workers, run_stage
from rgsyn import tracking
from rgsyn.config import SynthParams, load_params
from tasks.synth import finalize, plan, shard


def task_runner(sp: SynthParams):
    if sp.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=sp.workers)
    if sp.task_runner == "dask":
        return dask_runner(sp.workers, sp.dask_address, gpus=0 if sp.dask_address else per_gpu_workers(sp.device))
    raise ValueError(f"params.yaml: synth.task_runner = {sp.task_runner!r}; use threads or dask")


@flow(name="synthesize")
def synthesize_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)

    def work(run) -> dict:
        written_by = {"mlflow_run_id": run.id, **tracking.provenance()}  # + git sha, Prefect flow run, DVC exp
        pl = plan(p)
        futures = shard.with_options(retries=p.synth.retries).map(unmapped(p), unmapped(pl), range(len(pl.shards)),
                                                                  unmapped(written_by))
        return finalize(p, pl, futures.result(), written_by)

    return run_stage(p, "synthesize", p.synth, work, devices=[p.synth.device],
                     numbers=lambda out: {"synth": out["metrics"]}, files=lambda out: [out["manifest"]],
                     folder="synth", metrics_file=p.synth.metrics, metrics=lambda out: out["metrics"])


def main(params_path: str = "params.yaml") -> dict:
    """Run the flow on the task runner the params ask for."""
    return synthesize_flow.with_options(task_runner=task_runner(load_params(params_path).synth))(params_path)


if __name__ == "__main__":
    print(main(*sys.argv[1:2])["metrics"])
