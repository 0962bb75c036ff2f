"""Mixed real + synthetic training, the ablation/report helpers, and the whole pipeline triggered
through a served Prefect deployment with changed parameters (the one real end-to-end flow run)."""
import json
import math
import os
import subprocess
import sys
import time

import mlflow
import pytest

from rgsyn.config import MixParams, SelectionParams, load_params
from rgsyn.data.images import load_images
from rgsyn.downstream.reid import Synthetic, train_reid
from tests.conftest import ROOT, micro_params
from tests.test_coldstart import MICRO
from tests.test_synth import SYNTH


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
    _, zero = train_reid(ds, cfg, 0, progress=False, synthetic=syn, mix=MixParams("x", True, 0.0, False, 0.5, 0.1),
                         selection=SelectionParams("fast", 0.5, "head"))
    for k in ("mAP", "rank1", "mINP"):
        assert zero[k] == real[k]
    assert "dss_kept" not in zero


def test_mixed_batches_select_and_log(micro):
    p, ds, syn = micro
    cfg = p.downstream.train  # p=4, k=2: share 1/3 -> round(4 * 0.5) = 2 synthetic ids x 2 = 4 candidates
    logs = []
    _, m = train_reid(ds, cfg, 0, progress=False, synthetic=syn, log=lambda d, s: logs.append(d),
                      mix=MixParams("x", True, 1 / 3, False, 0.5, 0.1), selection=SelectionParams("fast", 0.5, "head"))
    steps = cfg.epochs * (20 // cfg.p)
    assert m["dss_candidates"] == 4 * steps and m["dss_kept"] == math.ceil(0.5 * 4) * steps
    assert m["synthetic_images"] == len(syn.pids)
    assert len(logs) == cfg.epochs and logs[0]["dss_kept"] + logs[0]["dss_dropped"] == 4 * (20 // cfg.p)
    assert logs[0]["delta_kept_mean"] <= logs[0]["delta_dropped_mean"]  # kept = the smallest Δl
    assert logs[0]["synthetic_share"] == pytest.approx(4 / (4 + cfg.p * cfg.k))
    bad = Synthetic(syn.images[:2], [99999, 99999])
    with pytest.raises(ValueError, match="identities \\[99999\\] that the real train set lacks"):
        train_reid(ds, cfg, 0, progress=False, synthetic=bad, mix=MixParams("x", True, 0.5, False, 0.5, 0.1))


def test_ladder_table_and_overrides():
    from flows.pipeline import overrides
    from rgsyn import ablation, report

    t = report.ladder({"full": [{"seed": 0, "mAP": 0.5, "rank1": 0.6}, {"seed": 1, "mAP": 0.7, "rank1": 0.8}],
                       "real_only": [{"seed": 0, "mAP": 0.4, "rank1": 0.5}, {"seed": 1, "mAP": 0.4, "rank1": 0.7}]})
    assert [r["name"] for r in t["rows"]] == ["real_only", "full"]  # ladder order, not insertion order
    full = t["rows"][1]
    assert full["mAP_mean"] == pytest.approx(0.6) and full["mAP_std"] == pytest.approx(math.sqrt(0.02))
    assert full["n_seeds"] == 2 and t["rows"][0]["rank1_std"] == pytest.approx(math.sqrt(0.02))
    assert "| full | 60.0 ± 14.1 | 70.0 ± 14.1 | +20.0 | 2 |" in report.ladder_markdown(t)
    assert overrides(rl_steps=3, reward_weights=[1, 0, 0], selection=False, dataset_root="/d") == {
        "data.root": "/d", "rl.steps": 3, "rl.weights": [1, 0, 0], "downstream.selection.mode": "off"}
    assert overrides() == {}
    assert ablation.row_overrides("coldstart_synth", "s") == {"downstream.mix.synthetic": "s",
                                                              "downstream.selection.mode": "off"}
    assert ablation.row_overrides("real_only", None)["downstream.mix.share"] == 0.0
    assert ablation.row_overrides("curriculum", "s")["downstream.mix.curriculum"] is True


def test_ablation_workers_start_without_eager_malloc_trim():
    """Dask's nanny default MALLOC_TRIM_THRESHOLD_=65536 made torch training ~1.8x slower in workers."""
    import copy

    import dask
    from distributed.nanny import _get_env_variables

    from flows.ablation import task_runner

    saved = copy.deepcopy(dask.config.config)
    try:
        task_runner(2)
        env = _get_env_variables("distributed.nanny.pre-spawn-environ")
    finally:  # the runner sets dask's global config; leave it as it was for the other tests
        dask.config.config.clear()
        dask.config.config.update(saved)
    assert "MALLOC_TRIM_THRESHOLD_" not in env or "MALLOC_TRIM_THRESHOLD_" in os.environ
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

    params = micro_params(tmp_path, **{
        "prior.out_dir": str(tmp_path / "prior"), "prior.ckpt_dir": str(tmp_path / "prior_state"),
        "coldstart.pretrained": str(tmp_path / "prior"), "coldstart.out_dir": str(tmp_path / "cs"),
        "rl.coldstart": str(tmp_path / "cs"), "rl.out_dir": str(tmp_path / "rl"), "rl.bank": str(tmp_path / "bank.parquet"),
        "synth.checkpoint": str(tmp_path / "rl"), "synth.out_dir": str(tmp_path / "data/synthetic"),
        "reference.train.seeds": [0], "downstream.mix.accepted_only": False, "downstream.mix.share": 0.5,
        **MICRO, **SYNTH})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value(), "TQDM_DISABLE": "1",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "flows.serve", "--params", str(params), "--name", "micro"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_deployment("pipeline/micro", proc)
        run = run_deployment("pipeline/micro", timeout=600, parameters={
            "rl_steps": 1, "downstream_epochs": 1, "reward_weights": [1.0, 0.0, 0.0], "selection": False})
        assert run.state.is_completed(), run.state
    finally:
        proc.terminate()
        proc.wait(30)
    used = load_params(tmp_path / "runs" / f"params-{run.id}.yaml")
    assert used.rl.steps == 1 and used.rl.weights == (1.0, 0.0, 0.0)
    assert used.downstream.selection.mode == "off" and used.downstream.train.epochs == 1
    assert used.synth.per_id == 3  # untouched keys keep the file's values
    assert json.loads((tmp_path / "rl/rl.json").read_text())["step"] == 1
    down = json.loads((tmp_path / "metrics/downstream.json").read_text())
    assert down["n_seeds"] == 1 and 0 <= down["mAP_mean"] <= 1 and "mAP_gain" in down
    assert down["per_seed"][0]["dss_kept"] == down["per_seed"][0]["dss_candidates"] > 0  # selection off: all kept
    assert (tmp_path / "reports/report.md").exists() and (tmp_path / "reports/embedding.png").exists()
    assert (tmp_path / "prior/transformer").exists()  # the prior ran: coldstart.pretrained was missing

    mlflow.set_tracking_uri(used.tracking.uri)
    runs = {r.info.run_name: r for r in mlflow.search_runs(experiment_names=[used.tracking.experiment],
                                                           output_format="list")}
    assert {"prior", "reference", "coldstart", "rl", "synthesize", "downstream", "downstream-seed0", "report"} <= set(runs)
    for r in runs.values():
        assert r.data.tags["prefect_flow_run_id"] and r.data.tags["git_sha"] and "dvc_exp" in r.data.tags
    assert runs["downstream"].data.params["selection.mode"] == "off"
    history = mlflow.MlflowClient().get_metric_history(runs["downstream-seed0"].info.run_id, "loss")
    assert len(history) == 1
