"""`ablation` stage (`make ablation`): python -m flows.ablation [params.yaml]

The ladder of rgsyn/ablation.py over `ablation.seeds`, run as Prefect tasks on a Dask LocalCluster
of `ablation.workers` single-threaded processes (generators first, each rung's seeds as soon as its
shards exist). Writes reports/ablation.{md,json,png} and reports/ablation_embedding.png, all to MLflow.
"""
import json
import sys
import time

import torch
from prefect import flow

from rgsyn import report, tracking
from rgsyn.ablation import GENERATOR, NOTES, ROWS
from rgsyn.config import load_params, to_dict
from rgsyn.memory_bank import load_memory_bank
from rgsyn.synth.reader import read_shards
from tasks.ablation import make_generator, train_row


def task_runner(workers: int):
    if workers <= 1:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=1)
    import dask
    from prefect_dask import DaskTaskRunner

    # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (memory goes back to the OS
    # eagerly); torch's CPU allocator then pays page faults on every large tensor: a 12-epoch
    # downstream training took 22.7 s with it vs 12.8 s without (1 thread each, this 2-core box).
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})


@flow(name="ablation")
def ablation_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    t0 = time.time()
    with tracking.start_run(p.tracking, "ablation", to_dict(p.ablation)) as run:
        gens = {g: make_generator.submit(params_path, g) for g in ("sem", "cov", "coldstart", "full")}
        jobs = [(row, seed, train_row.submit(params_path, row, seed, gens[GENERATOR[row]] if GENERATOR[row] else None))
                for row in ROWS for seed in p.ablation.seeds]
        results = {}
        for row, seed, fut in jobs:
            m = fut.result()
            results.setdefault(row, []).append(m)
            run.log({f"{row}_mAP": m["mAP"], f"{row}_rank1": m["rank1"]}, step=seed)
        table = report.ladder(results)
        table.update(minutes=(time.time() - t0) / 60, seeds=list(p.ablation.seeds),
                     per_seed={r: v for r, v in results.items()})
        base = p.ablation.report
        files = [report.write_json(table, f"{base}.json"), report.ladder_plot(table, f"{base}.png")]
        md = f"{base}.md"
        open(md, "w").write(f"# Ablation ladder ({len(p.ablation.seeds)} seeds, {table['minutes']:.1f} min)\n\n"
                            + report.ladder_markdown(table, NOTES))
        files.append(md)
        shards = read_shards(gens["full"].result(), accepted_only=True)
        bank, pids = load_memory_bank(p.rl.bank)
        files.append(report.embedding_plot(bank, pids.numpy(), shards.features, shards.labels.numpy(),
                                           f"{base}_embedding.png", title="real (o) vs accepted synthetic (x), full method"))
        for f in files:
            run.log_artifact(f, "ablation")
        run.log({f"{r['name']}_{k}": r[k] for r in table["rows"] for k in ("mAP_mean", "mAP_std", "rank1_mean", "rank1_std")})
    return table


def main(params_path: str = "params.yaml") -> dict:
    torch.set_num_threads(1)
    return ablation_flow.with_options(task_runner=task_runner(load_params(params_path).ablation.workers))(params_path)


if __name__ == "__main__":
    out = main(*sys.argv[1:2])
    print(json.dumps({r["name"]: [round(r["mAP_mean"], 4), round(r["mAP_std"], 4)] for r in out["rows"]}, indent=1))
    print(f"ablation: {out['minutes']:.1f} min; reports/ablation.md")
