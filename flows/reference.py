"""`reference` stage: python -m flows.reference [params.yaml]

Real-only re-id over `reference.train.seeds`; the first seed's model is the reference encoder
(reference.out_dir); reference.metrics holds the real-only numbers.
"""
import sys

from flows.train import main as train_main


def main(params_path: str = "params.yaml") -> dict:
    return train_main("reference", params_path)


if __name__ == "__main__":
    out = main(*sys.argv[1:2])
    print({k: round(v, 4) for k, v in out.items() if k.endswith(("_mean", "_std"))})
