"""Mixed real + synthetic training, the ablation/report helpers, and the whole pipeline triggered
through a served Prefect deployment with changed parameters (the one real end-to-end flow run)."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import scipy.stats
import yaml

from rgsyn.config import MixParams, SelectionParams, load_params
from rgsyn.data.images import load_images
from rgsyn.downstream.reid import train_reid
from rgsyn.downstream.trainer import Synthetic
from tests.conftest import MICRO_GEN, ROOT, micro_params


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    from rgsyn.data.layouts import read_index
    from rgsyn.data.stage import prepare

    tmp = tmp_path_factory.mktemp("mixed")
    p = load_params(micro_params(tmp))
    prepare(p.data)
    ds = read_index(p.data.index)
    # stand-in synthetic data: the real train images at half size under their own pids
    imgs = load_images([r.path for r in ds.train], 32, 16)
    return p, ds, Synthetic(imgs, [r.pid for r in ds.train])


def test_share_zero_is_the_real_only_loop(micro):
    p, ds, syn = micro
    cfg = p.downstream.train
    _, real = train_reid(ds, cfg, 0, progress=False)
    _, zero = train_reid(ds, cfg, 0, progress=False, synthetic=syn, mix=MixParams("x", "", True, 0.0, False, 0.5, 0.1, 0.1),
                         selection=SelectionParams("fast", 0.5, "head", "real"))
    for k in ("mAP", "rank1", "mINP"):
        assert zero[k] == real[k]
    assert "dss_kept" not in zero


def test_mixed_batches_select_and_log(micro):
    p, ds, syn = micro
    # p=4, k=2: share 1/3 -> round(4 * 0.5) = 2 synthetic ids kept; keep ratio 0.5 -> 4 ids x 2 = 8 candidates
    cfg = p.downstream.train
    logs = []
    _, m = train_reid(ds, cfg, 0, progress=False, synthetic=syn, log=lambda d, s: logs.append(d),
                      mix=MixParams("x", "", True, 1 / 3, False, 0.5, 0.1, 0.1), selection=SelectionParams("fast", 0.5, "head", "real"))
    steps = cfg.epochs * (20 // cfg.p)
    assert m["dss_candidates"] == 8 * steps and m["dss_kept"] == 4 * steps
    assert m["synthetic_images"] == len(syn.pids)
    assert len(logs) == cfg.epochs and logs[0]["selection/kept"] + logs[0]["selection/dropped"] == 8 * (20 // cfg.p)
    assert logs[0]["selection/delta_kept_mean"] <= logs[0]["selection/delta_dropped_mean"]  # kept = the smallest Δl
    assert logs[0]["selection/synthetic_share"] == pytest.approx(4 / (4 + cfg.p * cfg.k))  # trained, not drawn
    bad = Synthetic(syn.images[:2], [99999, 99999])
    with pytest.raises(ValueError, match="identities \\[99999\\] that the real train set lacks"):
        train_reid(ds, cfg, 0, progress=False, synthetic=bad, mix=MixParams("x", "", True, 0.5, False, 0.5, 0.1, 0.1))


def test_ladder_statistics_and_overrides():
    from flows.pipeline import overrides
    from rgsyn import ablation, report

    per = {"real_only": [0.50, 0.52, 0.48, 0.51, 0.49], "dss": [0.51, 0.53, 0.47, 0.51, 0.49],
           "full": [0.55, 0.56, 0.52, 0.57, 0.54]}
    t = report.ladder({k: [{"seed": i, "mAP": v, "rank1": v + 0.1} for i, v in enumerate(vals)]
                       for k, vals in reversed(per.items())})
    assert [r["name"] for r in t["rows"]] == ["real_only", "dss", "full"]  # ladder order, not insertion order
    full, dss = t["rows"][2], t["rows"][1]
    d = np.array(per["full"]) - np.array(per["real_only"])  # paired by seed: +5, +4, +4, +6, +5 points
    assert full["mAP_diff_real_only"] == pytest.approx(d.mean()) and full["n_seeds"] == 5
    assert full["ci_low"] > 0 and full["ci_low"] <= d.mean() <= full["ci_high"]
    t_ref = scipy.stats.ttest_rel(per["full"], per["real_only"])
    assert full["p_value"] == pytest.approx(t_ref.pvalue) and t["interval"] == "paired t, 95 %"
    assert (full["ci_low"], full["ci_high"]) == pytest.approx(tuple(t_ref.confidence_interval(0.95)))
    assert full["vs_below"]["name"] == "dss" and full["beats_below"]
    assert dss["vs_below"]["name"] == "real_only" and not dss["beats_below"]  # +1, +1, -1, 0, 0 points
    md = report.ladder_markdown(t)
    assert "| full | 54.8 ± 1.9 |" in md and "`dss` does not beat `real_only`" in md
    assert overrides(rl_steps=3, reward_weights=[1, 0, 0], selection="off", dataset_root="/d") == {
        "data.root": "/d", "rl.steps": 3, "rl.weights": [1, 0, 0], "downstream.selection.mode": "off"}
    assert overrides() == {}
    assert ablation.row_overrides("coldstart_synth", "s") == {"downstream.mix.synthetic": "s",
                                                              "downstream.selection.mode": "off"}
    assert ablation.row_overrides("dss_random", "s")["downstream.selection.mode"] == "random"
    assert "downstream.selection.mode" not in ablation.row_overrides("dss", "s")  # the pipeline's own
    assert ablation.row_overrides("dss", "s", "exact") == {"downstream.mix.synthetic": "s"}
    assert ablation.row_overrides("dss", "s", "off")["downstream.selection.mode"] == "fast"  # shipped without
    assert "downstream.selection.mode" not in ablation.row_overrides("full", "s", "off")  # RL rungs: the pipeline's
    assert ablation.row_overrides("real_only", None)["downstream.mix.share"] == 0.0
    assert ablation.row_overrides("curriculum", "s")["downstream.mix.curriculum"] is True
    assert ablation.row_overrides("novel", "n") == {"downstream.mix.synthetic": "", "downstream.mix.novel": "n"}
    t2 = report.ladder({k: [{"seed": i, "mAP": v, "rank1": v} for i, v in enumerate(vals)]
                        for k, vals in {**per, "dss_random": per["full"], "sem": per["dss"]}.items()})
    below = {r["name"]: r["vs_below"]["name"] for r in t2["rows"] if "vs_below" in r}
    assert below == {"dss_random": "real_only", "dss": "dss_random", "sem": "dss", "full": "sem"}  # RL on selection
    t3 = report.ladder({k: [{"seed": i, "mAP": v, "rank1": v} for i, v in enumerate(vals)]
                        for k, vals in {**per, "coldstart_synth": per["dss"], "sem": per["dss"]}.items()},
                       below_of=ablation.below_rungs("off"))
    below = {r["name"]: r["vs_below"]["name"] for r in t3["rows"] if "vs_below" in r}
    assert below["sem"] == "coldstart_synth" and below["dss"] == "coldstart_synth"  # RL without selection
    t = report.ladder({k: [{"seed": i, "mAP": v, "rank1": v} for i, v in enumerate(vals)]
                       for k, vals in {**per, "novel": per["dss"]}.items()})
    assert t["rows"][-1]["name"] == "novel" and t["rows"][-1]["vs_below"]["name"] == "full"


def test_novel_shards_are_read_accepted_only_whatever_the_mix_says(monkeypatch):
    """`mix.accepted_only: false` opens the augment shards' rejected rows, never the novel ones: their
    `accepted` column is the 1:N leak gate."""
    import torch

    from rgsyn.downstream.common import load_synthetic
    from rgsyn.synth import reader

    calls = {}

    class Rows:
        def __init__(self, pid):
            self.labels = torch.tensor([pid, pid])

        def __len__(self):
            return 2

        def images(self):
            return torch.zeros(2, 3, 4, 4, dtype=torch.uint8)

    def fake(path, accepted_only=True):
        calls[path] = accepted_only
        return Rows(900 if path == "novel" else 1)

    monkeypatch.setattr(reader, "read_shards", fake)
    for only in (False, True):
        p = load_params(ROOT / "params.yaml", {"downstream.mix.synthetic": "aug", "downstream.mix.novel": "novel",
                                              "downstream.mix.accepted_only": only})
        syn, novel = load_synthetic(p)
        assert calls == {"aug": only, "novel": True} and novel == [900] and syn.pids == [1, 1, 900, 900]


def test_pipeline_stages_come_from_dvc_yaml():
    from flows.pipeline import STAGES, pipeline_stages, resolve

    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert list(STAGES) == [s for s in dvc if s != "ablation"]  # same order, the ablation left to make ablation
    for st in pipeline_stages():
        assert dvc[st["name"]]["cmd"].split()[2] == st["module"] and (ROOT / (st["module"].replace(".", "/") + ".py")).exists()
    assert resolve("${audit.report}.json", {"audit": {"report": "reports/privacy"}}) == "reports/privacy.json"


def test_flows_take_output_paths_from_params():
    """No flow or task names an output path itself: they come from params.yaml (and dvc.yaml from there)."""
    for f in list((ROOT / "flows").glob("*.py")) + list((ROOT / "tasks").glob("*.py")):
        text = f.read_text()
        assert not re.search(r"[\'\"](metrics|reports|checkpoints|data|models)/", text), f"{f.name} names a path"


def test_ablation_workers_start_without_eager_malloc_trim(monkeypatch):
    """Dask's nanny default MALLOC_TRIM_THRESHOLD_=65536 made torch training ~1.8x slower in workers.
    The runner drops that key and keeps Dask's other defaults (OMP_NUM_THREADS=1). A variable the shell
    sets wins over them, as Dask means it to (the user's choice), so the test runs without either."""
    import copy

    import dask
    from distributed.nanny import _get_env_variables

    from flows.ablation import task_runner

    for name in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    saved = copy.deepcopy(dask.config.config)
    try:
        task_runner(2)
        env = _get_env_variables("distributed.nanny.pre-spawn-environ")
    finally:  # the runner sets dask's global config; leave it as it was for the other tests
        dask.config.config.clear()
        dask.config.config.update(saved)
    assert "MALLOC_TRIM_THRESHOLD_" not in env
    assert env["OMP_NUM_THREADS"] == "1"  # single-threaded workers as before


def _wait_for_deployment(name: str, proc, seconds: float = 120):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    t0 = time.time()
    with get_client(sync_client=True) as client:
        while time.time() - t0 < seconds:
            if proc.poll() is not None:
                raise RuntimeError(f"flows.serve exited: {proc.stdout.read()}")
            try:
                return client.read_deployment_by_name(name)
            except ObjectNotFound:
                time.sleep(1)
    raise TimeoutError(name)


def test_served_deployment_runs_the_whole_pipeline_with_changed_parameters(tmp_path, prefect_harness):
    """`make serve` in miniature: flows.serve in a subprocess against the test server; a run triggered
    through the API with changed parameters goes data -> prior -> ... -> report with those values."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    params = micro_params(tmp_path, **{**MICRO_GEN, "downstream.mix.accepted_only": False,
                                       "downstream.mix.share": 0.5})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value(), "TQDM_DISABLE": "1",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "flows.serve", "--params", str(params), "--name", "micro"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        dep = _wait_for_deployment("pipeline/micro", proc)
        # the form a user sees: the file's values as defaults, a description per argument, stages as choices
        assert dep.parameters["rl_steps"] == 2 and dep.parameters["selection"] == "off"
        props = dep.parameter_openapi_schema["properties"]
        assert all(props[k].get("description") for k in props)
        assert "data" in json.dumps(props["stages"]) and "privacy" in json.dumps(props["stages"])
        run = run_deployment("pipeline/micro", timeout=600, parameters={
            "rl_steps": 1, "downstream_epochs": 1, "reward_weights": [1.0, 0.0, 0.0], "selection": "fast"})
        assert run.state.is_completed(), run.state
    finally:
        proc.terminate()
        proc.wait(30)
    used = load_params(tmp_path / "runs" / f"params-{run.id}.yaml")
    assert used.rl.steps == 1 and used.rl.weights == (1.0, 0.0, 0.0)
    assert used.downstream.selection.mode == "fast" and used.downstream.train.epochs == 1
    assert used.synth.per_id == 3  # untouched keys keep the file's values
    assert json.loads((tmp_path / "rl/rl.json").read_text())["steps_taken"] == 1
    down = json.loads((tmp_path / "metrics/downstream.json").read_text())
    assert down["n_seeds"] == 1 and 0 <= down["mAP_mean"] <= 1 and "mAP_gain" in down
    assert 0 < down["per_seed"][0]["dss_kept"] < down["per_seed"][0]["dss_candidates"]  # selection fast: a share kept
    assert (tmp_path / "reports/report.md").exists() and (tmp_path / "reports/embedding.png").exists()
    assert (tmp_path / "prior/transformer").exists()  # the prior ran: coldstart.pretrained was missing
    assert (tmp_path / "auditor/encoder.json").exists()  # so did the auditor
    assert (tmp_path / "backbone/encoder.json").exists()  # and the backbone
    priv = json.loads((tmp_path / "reports/privacy.json").read_text())
    assert {"copy", "consistency", "mia", "novel"} <= set(priv)
    for release in (used.synth.out_dir, used.audit.novel_out_dir):  # both cards carry the report's figures
        head = (Path(release) / "README.md").read_text().removeprefix("---\n").partition("\n---\n")[0]
        assert yaml.safe_load(head)["rgsyn"]["privacy_audit"] == {"report": f"{used.audit.report}.json", **priv}

    mlflow.set_tracking_uri(used.tracking.uri)
    runs = {r.info.run_name: r for r in mlflow.search_runs(experiment_names=[used.tracking.experiment],
                                                           output_format="list")}
    assert {"prior", "auditor", "backbone", "reference", "coldstart", "rl", "synthesize", "privacy", "downstream",
            "downstream-seed0", "report"} <= set(runs)
    for name, r in runs.items():  # every run points at the deployment run that started it all
        assert r.data.tags["prefect_flow_run_id"] == str(run.id) and r.data.tags["git_sha"]
        assert r.data.tags["dvc_exp"] == "outside-dvc" and r.data.tags["prefect_deployment"] == "micro"
        assert r.data.tags["dvc_stage"] == name.split("-seed")[0]
    assert runs["downstream"].data.params["selection.mode"] == "fast"
    history = mlflow.MlflowClient().get_metric_history(runs["downstream-seed0"].info.run_id, "loss/loss")
    assert len(history) == 1
    exp = mlflow.get_experiment_by_name(used.tracking.experiment)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on the runs


def test_readme_results_are_the_reports():
    """The README's results block is generated from the committed reports and metrics, so no figure
    in it can go stale: rerun `python -m rgsyn.report --readme` after a run that changes them."""
    from rgsyn import report

    text = (ROOT / "README.md").read_text()
    i, j = text.index(report.README_BEGIN), text.index(report.README_END) + len(report.README_END)
    assert text[i:j] == report.readme_results(ROOT)
