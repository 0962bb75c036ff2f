"""The GPU benchmark and the micro pipeline at CPU size: what the device check runs, end to end."""
import json
import sys

from tests.conftest import load_bench as load


def test_bench_gpu_small_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "bench.json"
    load("gpu").main(["--device", "cpu", "--small", "--json", str(out)])
    res = json.loads(out.read_text())
    assert {"device", "torch", "dtype", "compile", "small", "model", "config", "synthesis", "rl", "reid",
            "ratio"} <= set(res)
    assert res["device"] == "cpu" and res["dtype"] == "fp32" and res["small"] is True
    syn = res["synthesis"]
    assert syn["images"] == 8 and len(syn["rgsyn_seconds"]) == len(syn["pipeline_seconds"]) == 1
    for k in ("rgsyn_images_per_s", "sampler_images_per_s", "pipeline_images_per_s"):
        assert syn[k] > 0
    assert res["ratio"]["synthesis_vs_pipeline"] > 0 and res["ratio"]["sampler_vs_pipeline"] > 0
    assert res["rl"]["trajectories_per_s"] > 0 and res["rl"]["trajectories"] == 2 * 4
    assert res["reid"]["images_per_s"] > 0 and res["reid"]["batch"] == 64
    assert set(syn["peak_gib"]) == {"rgsyn", "sampler", "pipeline"}  # None on the CPU
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("ratio: synthesis_vs_pipeline=")


def test_gpu_pipeline_small_runs_every_stage(tmp_path):
    out = tmp_path / "pipeline.json"
    report = load("gpu_pipeline").main(["--device", "cpu", "--small", "--json", str(out),
                                        "--work", str(tmp_path / "work")])
    res = json.loads(out.read_text())
    assert res["ok"] and report["ok"]
    assert list(res["stages"]) == ["data", "reference", "generator", "coldstart", "rl_dpok", "rl", "synthesize",
                                   "downstream"]
    assert all(s["seconds"] >= 0 and "error" not in s for s in res["stages"].values())
    assert res["stages"]["rl_dpok"]["result"]["algorithm"] == "dpok" and res["stages"]["rl"]["result"]["algorithm"] == "draft"
    assert (tmp_path / "work/checkpoints/rl-dpok").is_dir()  # beside the synthesised adapter, not over it
    assert all(s["peak_rss_gib"] > 0 for s in res["stages"].values()) and res["machine"]["cpu_count"] >= 1
    assert res["stages"]["synthesize"]["result"]["samples"] == 4 * 4  # one shard: 4 identities x per_id 4
    assert res["stages"]["downstream"]["result"]["dss_candidates"] > 0  # the synthetic rows joined the steps
    assert (tmp_path / "work/checkpoints/downstream/encoder.safetensors").exists()
    # resumed at a stage in the same work folder: the earlier stages' entries are kept, marked resumed
    again = load("gpu_pipeline").main(["--device", "cpu", "--small", "--json", str(out), "--work", str(tmp_path / "work"),
                                       "--from", "synthesize"])
    assert again["ok"] and again["stages"]["rl"]["resumed"] and "resumed" not in again["stages"]["synthesize"]


def test_gpu_pipeline_records_the_failing_stage(tmp_path, monkeypatch):
    mod = load("gpu_pipeline")

    def boom():
        raise RuntimeError("no GPU today")
    monkeypatch.setattr(mod, "stages", lambda params_path, small: [("data", lambda: {}), ("reference", boom),
                                                                    ("generator", lambda: {})])
    out = tmp_path / "pipeline.json"
    report = mod.run("cpu", True, tmp_path / "work", out)
    res = json.loads(out.read_text())
    assert not report["ok"] and not res["ok"]
    assert list(res["stages"]) == ["data", "reference"]  # stops at the first failure
    assert "RuntimeError: no GPU today" in res["stages"]["reference"]["error"]


def test_train_seed_runs_untracked_without_mlflow(monkeypatch):
    """The GPU image has no MLflow: train_seed must still import and run, its run a no-op."""
    mod = load("gpu_pipeline")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ModuleNotFoundError
    import rgsyn
    import rgsyn.downstream

    for name in ("rgsyn.tracking", "rgsyn.downstream.run"):  # as in a process that never had MLflow
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.delattr(rgsyn, "tracking", raising=False)
    monkeypatch.delattr(rgsyn.downstream, "run", raising=False)
    with mod.untracked():
        from rgsyn.downstream import run

        with run.tracking.start_run(None, "x", {}, nested=True) as r:
            r.log({"loss": 1.0}, 0)
    assert "rgsyn.tracking" not in sys.modules and not hasattr(rgsyn, "tracking")


def test_committed_cpu_runs_at_paper_shapes():
    """bench/results/cpu-paper-shapes.json (docs/gpu.md) is a finished fp32 run at the real shapes: every
    stage, none resumed from another run, DiT-XL/2 as diffusers builds it. The bf16 run, where committed,
    broke nowhere: its stages are the pipeline's in order, and any stage that did not finish was stopped
    by the time limit (SIGTERM), not by an error."""
    from pathlib import Path

    names = ["data", "reference", "generator", "coldstart", "rl_dpok", "rl", "synthesize", "downstream"]
    results = Path(__file__).resolve().parents[1] / "bench/results"
    run = json.loads((results / "cpu-paper-shapes.json").read_text())
    assert run["ok"] and not run["small"] and run["device"] == "cpu" and run["precision"] == "fp32"
    assert list(run["stages"]) == names
    assert not any(s.get("resumed") or s.get("error") for s in run["stages"].values())
    assert run["stages"]["generator"]["result"]["parameters"] == 749_826_464
    bf16 = results / "cpu-paper-shapes-bf16.json"
    if bf16.exists():
        run = json.loads(bf16.read_text())
        assert run["precision"] == "bf16" and not run["small"]
        assert list(run["stages"]) == names[:len(run["stages"])]
        for stage in run["stages"].values():
            assert stage.get("error", "SystemExit: terminated by signal 15") == "SystemExit: terminated by signal 15"
