"""`downstream` stage: python -m flows.downstream [params.yaml]

Re-id on real + the accepted synthetic shards with dynamic sample selection over
`downstream.train.seeds`; downstream.metrics holds them with the real-only numbers of the same seeds
(reference.metrics) and the gain.
"""
import sys

from flows.train import main as train_main


def main(params_path: str = "params.yaml") -> dict:
    return train_main("downstream", params_path)


if __name__ == "__main__":
    out = main(*sys.argv[1:2])
    print({k: round(v, 4) for k, v in out.items() if k.endswith(("_mean", "_std", "_gain"))})
