"""The whole pipeline as one Prefect flow: python -m flows.pipeline [params.yaml]

data → prior → reference → coldstart → rl → synthesize → downstream → report, each stage its own
subflow (also runnable alone: python -m flows.<stage>, or dvc repro <stage>). The keyword arguments
are what the Prefect UI offers when triggering the `make serve` deployment; each one overrides a
params.yaml key for this run only (0 / "" / None = keep the file's value), and the params the run
used are written to runs/params-<flow run>.yaml. The prior runs only when coldstart.pretrained is
missing or prior_steps is given (the default ships it).
"""
import json
import sys
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from flows.coldstart import coldstart_flow
from flows.data import data_flow
from flows.downstream import downstream_flow
from flows.prior import prior_flow
from flows.reference import reference_flow
from flows.report import report_flow
from flows.rl import rl_flow
from flows.synthesize import main as synthesize
from rgsyn.config import load_params, write_params

STAGES = ("data", "prior", "reference", "coldstart", "rl", "synthesize", "downstream", "report")


def overrides(dataset_root: str = "", layout: str = "", pretrained: str = "", prior_steps: int = 0,
              coldstart_steps: int = 0, rl_steps: int = 0, synth_per_id: int = 0, downstream_epochs: int = 0,
              reward_weights: list[float] | None = None, selection: bool | None = None,
              selection_ratio: float | None = None, seeds: list[int] | None = None) -> dict:
    """Pipeline arguments -> dotted params.yaml overrides (only the ones given)."""
    o = {"data.root": dataset_root, "data.layout": layout, "coldstart.pretrained": pretrained,
         "prior.steps": prior_steps, "coldstart.steps": coldstart_steps, "rl.steps": rl_steps,
         "synth.per_id": synth_per_id, "downstream.train.epochs": downstream_epochs,
         "rl.weights": list(reward_weights) if reward_weights else None,
         "downstream.selection.mode": None if selection is None else ("fast" if selection else "off"),
         "downstream.selection.ratio": selection_ratio, "downstream.train.seeds": list(seeds) if seeds else None}
    return {k: v for k, v in o.items() if v not in (None, "", 0)}


@flow(name="pipeline", log_prints=True)
def pipeline_flow(params_path: str = "params.yaml", dataset_root: str = "", layout: str = "",
                  pretrained: str = "", prior_steps: int = 0, coldstart_steps: int = 0, rl_steps: int = 0,
                  synth_per_id: int = 0, downstream_epochs: int = 0, reward_weights: list[float] | None = None,
                  selection: bool | None = None, selection_ratio: float | None = None,
                  seeds: list[int] | None = None, stages: list[str] | None = None) -> dict:
    o = overrides(dataset_root, layout, pretrained, prior_steps, coldstart_steps, rl_steps, synth_per_id,
                  downstream_epochs, reward_weights, selection, selection_ratio, seeds)
    if o:  # the run's own params file: every subflow (and anyone later) reads exactly what it used
        params_path = str(write_params(params_path, o, Path("runs") / f"params-{flow_run.id or 'local'}.yaml"))
    p = load_params(params_path)
    wanted = list(stages or STAGES)
    unknown = sorted(set(wanted) - set(STAGES))
    if unknown:
        raise ValueError(f"pipeline: unknown stage {unknown[0]!r}; stages are {STAGES}")
    out = {"params": params_path, "overrides": o}
    if "data" in wanted:
        out["data"] = data_flow(params_path)
    if "prior" in wanted and (prior_steps or not (Path(p.coldstart.pretrained) / "transformer").exists()):
        out["prior"] = {k: v for k, v in prior_flow(params_path).items() if k in ("out_dir", "grid")}
    if "reference" in wanted:
        out["reference"] = reference_flow(params_path)
    if "coldstart" in wanted:
        out["coldstart"] = {k: coldstart_flow(params_path)[k] for k in ("before", "after")}
    if "rl" in wanted:
        out["rl"] = {k: rl_flow(params_path)[k] for k in ("before", "after")}
    if "synthesize" in wanted:
        out["synthesize"] = synthesize(params_path)["metrics"]
    if "downstream" in wanted:
        out["downstream"] = {k: v for k, v in downstream_flow(params_path).items() if k != "per_seed"}
    if "report" in wanted:
        out["report"] = report_flow(params_path)
    return json.loads(json.dumps(out, default=str))


if __name__ == "__main__":
    res = pipeline_flow(*sys.argv[1:2])
    print(json.dumps(res.get("report", {}).get("summary", res), indent=1))
