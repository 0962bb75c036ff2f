"""`synthesize` stage: python -m flows.synthesize [params.yaml]

Writes synth.out_dir (shard-*.parquet + _manifest.json), metrics/synth.json and the audit report
reports/synth_audit.json + reports/synth_audit.png (also logged to MLflow). One Prefect task per
shard, mapped over the task runner that synth.task_runner names: threads, or Dask (a LocalCluster of
synth.workers processes, or the scheduler at synth.dask_address, e.g. one worker per GPU).
"""
import json
import sys
from pathlib import Path

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from rgsyn import tracking
from rgsyn.config import SynthParams, load_params, to_dict
from tasks.synth import finalize, plan, shard


def task_runner(sp: SynthParams):
    if sp.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=sp.workers)
    if sp.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if sp.dask_address:
            return DaskTaskRunner(address=sp.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": sp.workers, "threads_per_worker": 1, "processes": True})
    raise ValueError(f"params.yaml: synth.task_runner = {sp.task_runner!r}; use threads or dask")


@flow(name="synthesize")
def synthesize_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    with tracking.start_run(p.tracking, "synthesize", to_dict(p.synth)) as run:
        written_by = {"mlflow_run_id": run.id, **tracking.provenance()}  # + git sha, Prefect flow run, DVC exp
        pl = plan(p)
        futures = shard.with_options(retries=p.synth.retries).map(unmapped(p), unmapped(pl), range(len(pl.shards)),
                                                                  unmapped(written_by))
        out = finalize(p, pl, futures.result(), written_by)
        run.log(out["metrics"])
        for f in (out["report"], out["histogram"], out["manifest"]):
            run.log_artifact(f, "synth")
        Path("metrics").mkdir(exist_ok=True)
        Path("metrics/synth.json").write_text(json.dumps(out["metrics"], indent=1))
    return out


def main(params_path: str = "params.yaml") -> dict:
    """Run the flow on the task runner the params ask for."""
    return synthesize_flow.with_options(task_runner=task_runner(load_params(params_path).synth))(params_path)


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:2])["metrics"], indent=1))
