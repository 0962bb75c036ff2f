"""`backbone` stage (frozen in dvc.yaml): python -m flows.backbone [params.yaml]

Trains the general-domain backbone the reference, utility and downstream trainers may start from
(`<stage>.train.pretrained_path: <backbone.out_dir>`, as the paper starts from ImageNet weights), on
general-domain identities of its own seed: never the auditor's weights, so the audit's matcher stays
independent of every model it judges. Committed (backbone.out_dir); retrain with
`python -m flows.backbone`, then `dvc commit backbone`.
"""
import sys

from prefect import flow

from flows.common import run_stage
from rgsyn.config import load_params
from tasks.backbone import train_backbone


@flow(name="backbone")
def backbone_flow(params_path: str = "params.yaml") -> dict:
    p = load_params(params_path)
    return run_stage(p, "backbone", p.backbone, lambda run: train_backbone(p, log=run.log),
                     devices=[p.backbone.train.device], numbers=lambda out: {"target_test": out["target_test"]})


def main(params_path: str = "params.yaml") -> dict:
    return backbone_flow(params_path)


if __name__ == "__main__":
    print(main(*sys.argv[1:2]))
