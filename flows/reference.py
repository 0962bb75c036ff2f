"""`reference` stage: python -m flows.reference [params.yaml]

Real-only re-id over `reference.train.seeds`; the first seed's model is the reference encoder
(checkpoints/reference); metrics/reference.json holds the real-only numbers.
"""
import sys

from prefect import flow

from rgsyn import tracking
from rgsyn.config import load_params, to_dict
from tasks.reference import train_seed, write_metrics


@flow(name="reference")
def reference_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    with tracking.start_run(p.tracking, "reference", to_dict(p.reference)) as run:
        seeds = p.reference.train.seeds
        per_seed = [train_seed(p, s, save_reference=(i == 0)) for i, s in enumerate(seeds)]
        out = write_metrics(p, per_seed)
        run.log({k: v for k, v in out.items() if k.endswith(("_mean", "_std"))})
        run.log_artifact(p.reference.metrics)
    return out


def main():
    out = reference_flow(*sys.argv[1:2])
    print({k: round(v, 4) for k, v in out.items() if k.endswith(("_mean", "_std"))})


if __name__ == "__main__":
    main()
