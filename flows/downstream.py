"""`downstream` stage: python -m flows.downstream [params.yaml]

Re-id on real + the accepted synthetic shards with dynamic sample selection, over
`downstream.train.seeds`; writes checkpoints/downstream and metrics/downstream.json (with the
real-only numbers of the same seeds from metrics/reference.json, and the gain).
"""
import json
import sys

from prefect import flow

from rgsyn import tracking
from rgsyn.config import load_params, to_dict
from tasks.downstream import train_seed, write_metrics


@flow(name="downstream")
def downstream_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    with tracking.start_run(p.tracking, "downstream", to_dict(p.downstream)) as run:
        seeds = p.downstream.train.seeds
        per_seed = [train_seed(p, s, save=(i == 0)) for i, s in enumerate(seeds)]
        out = write_metrics(p, per_seed)
        run.log({k: v for k, v in out.items() if k.endswith(("_mean", "_std", "_gain"))})
        run.log_artifact(p.downstream.metrics)
    return out


def main():
    out = downstream_flow(*sys.argv[1:2])
    print(json.dumps({k: v for k, v in out.items() if k != "per_seed"}, indent=1))


if __name__ == "__main__":
    main()
