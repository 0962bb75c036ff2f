"""The whole pipeline as one Prefect flow: python -m flows.pipeline [params.yaml]

The stages and their order come from dvc.yaml (the single source of stages): every stage there whose
command is `python -m flows.<module>`, in file order, except those marked `meta: {pipeline: false}`
(the ablation). A frozen stage (the committed prior, auditor and backbone, or a downloaded DiT-XL/2 in
the prior's place) runs only when its model, its first output, is missing: a missing sample grid beside
a download must not retrain the prior over it. Each stage is its own subflow (also runnable alone:
python -m flows.<stage>, or dvc repro <stage>). The keyword arguments are what the Prefect UI offers
when triggering the `make serve` deployment; each one given overrides a params.yaml key for this run
only, and the params the run used are written to runs/params-<flow run>.yaml. On CUDA, Prefect's `gpu`
tag limit is set to the visible GPUs first (flows.common.ensure_gpu_limit).
"""
import importlib
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Literal

import yaml
from prefect import flow
from prefect.runtime import flow_run

from flows.common import ensure_gpu_limit, stage_devices
from rgsyn.config import load_params, to_dict, write_params

DVC_FILE = Path(__file__).resolve().parents[1] / "dvc.yaml"


def pipeline_stages(dvc_file: Path = DVC_FILE) -> list[dict]:
    """[{name, module, frozen, outs}] of the pipeline's stages, in dvc.yaml order."""
    out = []
    for name, st in yaml.safe_load(dvc_file.read_text())["stages"].items():
        words = shlex.split(st["cmd"])
        if words[:2] != ["python", "-m"] or (st.get("meta") or {}).get("pipeline") is False:
            continue
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in st.get("outs", [])]
        out.append({"name": name, "module": words[2], "frozen": bool(st.get("frozen")), "outs": outs})
    return out


STAGES = tuple(s["name"] for s in pipeline_stages())
Stage = Literal[STAGES]  # the deployment form offers these as choices


def resolve(path: str, params: dict) -> str:
    """dvc.yaml's ${section.key} templating, resolved against a params dict."""
    def value(m):
        node = params
        for part in m.group(1).split("."):
            node = node[part]
        return str(node)
    return re.sub(r"\$\{([^}]+)\}", value, path)


def overrides(dataset_root: str = "", layout: str = "", pretrained: str = "", coldstart_steps: int = 0,
              rl_steps: int = 0, synth_per_id: int = 0, downstream_epochs: int = 0,
              reward_weights: list[float] | None = None, selection: str = "", selection_ratio: float = 0.0,
              seeds: list[int] | None = None) -> dict:
    """Pipeline arguments -> dotted params.yaml overrides (only the ones given)."""
    o = {"data.root": dataset_root, "data.layout": layout, "coldstart.pretrained": pretrained,
         "coldstart.steps": coldstart_steps, "rl.steps": rl_steps, "synth.per_id": synth_per_id,
         "downstream.train.epochs": downstream_epochs, "rl.weights": list(reward_weights) if reward_weights else None,
         "downstream.selection.mode": selection, "downstream.selection.ratio": selection_ratio,
         "downstream.train.seeds": list(seeds) if seeds else None}
    return {k: v for k, v in o.items() if v not in (None, "", 0, 0.0)}


@flow(name="pipeline", log_prints=True)
def pipeline_flow(params_path: str = "params.yaml", dataset_root: str = "", layout: str = "",
                  pretrained: str = "", coldstart_steps: int = 0, rl_steps: int = 0, synth_per_id: int = 0,
                  downstream_epochs: int = 0, reward_weights: list[float] | None = None, selection: str = "",
                  selection_ratio: float = 0.0, seeds: list[int] | None = None,
                  stages: list[Stage] | None = None) -> dict:
    """rgsyn end to end, stage by stage as dvc.yaml orders them.

    Args:
        params_path: the params file this run starts from; every argument below overrides one key of it.
        dataset_root: data.root, the dataset folder (the embedded default renders into it).
        layout: data.layout: embedded, market1501, cuhk03np-labeled or cuhk03np-detected.
        pretrained: coldstart.pretrained, a local DiT folder (DiTPipeline layout, e.g. DiT-XL-2-256).
        coldstart_steps: coldstart.steps, denoising steps of the label-table cold start.
        rl_steps: rl.steps, RL updates (one rollout each).
        synth_per_id: synth.per_id, synthetic images per identity.
        downstream_epochs: downstream.train.epochs of the real + synthetic trainer.
        reward_weights: rl.weights, [lambda_sem, lambda_cov, lambda_exp].
        selection: downstream.selection.mode: off, fast or exact.
        selection_ratio: downstream.selection.ratio, the share of synthetic candidates kept per step.
        seeds: downstream.train.seeds, one training per seed.
        stages: which stages to run (default: all of them, in order).
    """
    o = overrides(dataset_root, layout, pretrained, coldstart_steps, rl_steps, synth_per_id, downstream_epochs,
                  reward_weights, selection, selection_ratio, seeds)
    if o:  # the run's own params file: every subflow (and anyone later) reads exactly what it used
        params_path = str(write_params(params_path, o, Path("runs") / f"params-{flow_run.id or 'local'}.yaml"))
    p = load_params(params_path)
    ensure_gpu_limit(*stage_devices(p))  # on CUDA: at most one `gpu`-tagged task per GPU, every subflow too
    raw = to_dict(p)
    wanted = list(stages or STAGES)
    unknown = sorted(set(wanted) - set(STAGES))
    if unknown:
        raise ValueError(f"pipeline: unknown stage {unknown[0]!r}; stages are {STAGES}")
    out = {"params": params_path, "overrides": o}
    for st in pipeline_stages():
        if st["name"] not in wanted:
            continue
        if st["frozen"] and Path(resolve(st["outs"][0], raw)).exists():
            continue  # a committed or downloaded frozen model (prior, auditor, backbone) is used as is
        res = importlib.import_module(st["module"]).main(params_path)
        out[st["name"]] = {k: v for k, v in res.items() if k in ("summary", "metrics", "before", "after", "files")} \
            if isinstance(res, dict) else res
    return json.loads(json.dumps(out, default=str))


if __name__ == "__main__":
    res = pipeline_flow(*sys.argv[1:2])
    print(json.dumps(res.get("report", {}).get("summary", res), indent=1))
