"""`data` stage: python -m flows.data [params.yaml]"""
import sys

from prefect import flow

from flows.common import run_stage
from rgsyn.config import load_params
from tasks.data import prepare_data


@flow(name="data")
def data_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    return run_stage(p, "data", p.data, lambda run: prepare_data(p.data), numbers=lambda out: {"data": out})


def main(params_path: str = "params.yaml") -> dict:
    return data_flow(params_path)


if __name__ == "__main__":
    print(main(*sys.argv[1:2]))
