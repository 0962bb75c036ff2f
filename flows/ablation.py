"""`ablation` stage (`make ablation`): python -m flows.ablation [params.yaml]

The ladder of rgsyn/ablation.py over `ablation.seeds`, run as Prefect tasks on a Dask LocalCluster
of `ablation.workers` single-threaded processes (generators first, each rung's seeds as soon as its
shards exist). Writes ablation.report .md/.json/.png and _embedding.png, all to MLflow.
"""
import sys
import time

import torch
from prefect import flow

from flows.common import run_stage, task_runner
from rgsyn import report
from rgsyn.ablation import GENERATOR, NOTES, ROWS, below_rungs
from rgsyn.config import load_params
from rgsyn.data.stage import is_face
from rgsyn.memory_bank import load_memory_bank
from rgsyn.synth.reader import read_shards
from tasks.ablation import make_generator, train_row


@flow(name="ablation")
def ablation_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    face = is_face(p.data.layout)
    metric = "avg_acc" if face else "mAP"

    def work(run) -> dict:
        t0 = time.time()
        gens = {g: make_generator.submit(params_path, g) for g in ("sem", "cov", "coldstart", "full", "novel")}
        jobs = [(row, seed, train_row.submit(params_path, row, seed, gens[GENERATOR[row]] if GENERATOR[row] else None))
                for row in ROWS for seed in p.ablation.seeds]
        results = {}
        for row, seed, fut in jobs:
            m = fut.result()
            results.setdefault(row, []).append(m)
            run.log({f"seed/{row}_{metric}": m[metric]}, step=seed)
        mode = p.downstream.selection.mode  # the RL rungs' selection: what they are compared with
        below_of = below_rungs(mode)
        table = (report.face_ladder(results, p.data.sets, p.data.groups, below_of) if face
                 else report.ladder(results, below_of=below_of))
        table.update(minutes=(time.time() - t0) / 60, seeds=list(p.ablation.seeds), per_seed=results, selection=mode,
                     start=p.downstream.train.pretrained_path or "random init")
        base = p.ablation.report
        files = report.write_ladder(table, base, NOTES)
        shards = read_shards(gens["full"].result(), accepted_only=True)
        bank, pids = load_memory_bank(p.rl.bank)
        files.append(report.embedding_plot(bank, pids.numpy(), shards.features, shards.labels.numpy(),
                                           f"{base}_embedding.png", title="real (o) vs accepted synthetic (x), full method"))
        return {"table": table, "files": files}

    return run_stage(p, "ablation", p.ablation, work, devices=[p.rl.device, p.synth.device, p.downstream.train.device],
                     numbers=lambda out: {"ladder": {f"{r['name']}_{k}": r[k] for r in out["table"]["rows"]
                                                     for k in (f"{metric}_mean", f"{metric}_std")}},
                     files=lambda out: out["files"], folder="ablation")["table"]


def main(params_path: str = "params.yaml") -> dict:
    torch.set_num_threads(1)
    return ablation_flow.with_options(task_runner=task_runner(load_params(params_path).ablation.workers))(params_path)


if __name__ == "__main__":
    out = main(*sys.argv[1:2])
    m = out["metric"]
    print({r["name"]: [round(r[f"{m}_mean"], 4), round(r[f"{m}_std"], 4)] for r in out["rows"]})
    print(f"ablation: {out['minutes']:.1f} min; {load_params(*sys.argv[1:2]).ablation.report}.md")
