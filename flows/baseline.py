"""`baseline` stage: python -m flows.baseline [params.yaml]

Real-only re-id over `baseline.train.seeds`; writes the reference encoder and metrics/baseline.json.
"""
import sys

from prefect import flow

from rgsyn import tracking
from rgsyn.config import load_params, to_dict
from tasks.baseline import train_seed, write_metrics


@flow(name="baseline")
def baseline_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    with tracking.start_run(p.tracking, "baseline", to_dict(p.baseline)) as run:
        seeds = p.baseline.train.seeds
        per_seed = [train_seed(p, s, save_reference=(i == 0)) for i, s in enumerate(seeds)]
        out = write_metrics(p, per_seed)
        run.log({k: v for k, v in out.items() if k.endswith(("_mean", "_std"))})
        run.log_artifact(p.baseline.metrics)
    return out


def main():
    out = baseline_flow(*sys.argv[1:2])
    print({k: round(v, 4) for k, v in out.items() if k.endswith(("_mean", "_std"))})


if __name__ == "__main__":
    main()
