"""The whole pipeline at the paper's shapes, shrunk in everything else: does every stage run on a GPU,
and what does each cost?

    python bench/gpu_pipeline.py [--device cuda] [--precision bf16|fp32] [--steps N] [--json PATH] [--work DIR]
    python bench/gpu_pipeline.py --device cpu --small     # the CPU smoke run (tests/test_bench_gpu.py)
    python bench/gpu_pipeline.py --device cpu --json bench/results/cpu-paper-shapes.json --work DIR
                                                          # the real shapes on a CPU, fp32 (docs/gpu.md)
    ... --from rl_dpok                                    # resume at a stage in the same --work and --json

A params file is written from params.yaml with overrides (rgsyn.config.write_params: checked like any
params file), every path inside a work folder: an embedded dataset of 4 identities rendered at the
trainers' size, a random DiT-XL/2 + SD-shape VAE saved as a diffusers folder (rgsyn.generator.dit.save_dit)
that serves as coldstart.pretrained, ResNet-50 at 256x128, bf16 autocast, TF32, channels-last and
gradient checkpointing. Then the stage functions run in dvc.yaml's order, in this process:
data.stage.prepare -> downstream.run.train_seed (reference) -> coldstart.run_coldstart -> rl.loop.run_rl
(--rl-steps DPOK updates into their own folder, then as many DRaFT updates, the pipeline's default,
whose adapter is synthesised) -> synth.run.synthesize (one shard) -> downstream.run.train_seed (downstream, one epoch).
The audit's matcher is the reference encoder (audit.encoder may be any rgsyn encoder): the frozen
auditor stage trains on the prior's general-domain renders, which a real DiT-XL/2 has no use for.

Per stage: seconds, peak GPU memory (torch.cuda.max_memory_allocated, reset between stages) and peak
resident memory of the process (Linux VmHWM, restarted between stages through /proc/self/clear_refs), into
--json (default $OUT/pipeline.json or ./pipeline.json). A stage that raises ends the run: its error and
traceback tail go into the JSON and the exit status is 1, so a device check sees what broke where.
MLflow runs are switched off (train_seed's nested run logs nowhere): the GPU image has no MLflow, and
the run measures compute.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu import cpu_threads, peak_gib, peak_rss_gib, random_bundle, reset_peak, reset_peak_rss, sync  # noqa: E402

from rgsyn.config import load_params, write_params  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def overrides(work: Path, device: str, small: bool, precision: str = "", steps: int = 0, rl_steps: int = 2) -> dict:
    """Dotted params.yaml keys -> values: the micro pipeline's sizes, every output under `work`;
    `precision` "" = bf16 on CUDA, fp32 elsewhere; `steps` 0 = 3 when small or on the CPU, else 10."""
    cuda = device.startswith("cuda")
    precision = precision or ("bf16" if cuda else "fp32")
    steps = steps or (10 if cuda and not small else 3)
    h, w = (64, 32) if small else (256, 128)
    train = {"backbone": "test_resnet" if small else "resnet50", "pretrained_path": "",
             "embed_dim": 128 if small else 0, "height": h, "width": w, "p": 4, "k": 4, "epochs": 1,
             "iters_per_epoch": 0, "warmup_epochs": 1, "lr": 3.5e-4, "optimizer": "adam", "eval_batch": 64,
             "seeds": [0], "device": device}
    o = {
        "data.root": work / "data/embedded", "data.index": work / "data/index.parquet",
        "data.summary": work / "data/index.json",
        **{f"data.embedded.{k}": v for k, v in dict(height=h, width=w, num_train_ids=4, num_test_ids=4,
                                                     num_distractors=2, num_cameras=2, train_images_min=4,
                                                     train_images_max=4, test_images_per_id=4).items()},
        "reference.out_dir": work / "checkpoints/reference", "reference.metrics": work / "metrics/reference.json",
        "reference.val_out_dir": work / "checkpoints/reference-val",
        **{f"reference.train.{k}": v for k, v in train.items()}, "reference.train.seeds": [0, 1],
        **{f"downstream.train.{k}": v for k, v in train.items()},
        "downstream.out_dir": work / "checkpoints/downstream", "downstream.metrics": work / "metrics/downstream.json",
        # 2 of the 4 P identities per step are synthetic (p·s/(1−s)); every row, accepted or not, so the
        # mixed step runs whatever a random generator's audit says
        "downstream.mix.synthetic": work / "data/synthetic", "downstream.mix.share": 0.34,
        "downstream.mix.accepted_only": False,
        "prior.out_dir": work / "models/dit", "prior.ckpt_dir": work / "checkpoints/prior",
        "prior.grid": work / "reports/prior.png", "prior.device": device,
        "auditor.out_dir": work / "models/auditor", "auditor.train.device": device,
        "sampler.steps": steps, "sampler.guidance": 4.0, "sampler.eta": 1.0,
        "coldstart.pretrained": work / "models/dit", "coldstart.out_dir": work / "checkpoints/coldstart",
        "coldstart.metrics": work / "metrics/coldstart.json", "coldstart.grid": work / "reports/coldstart.png",
        "coldstart.steps": 2, "coldstart.batch": 4, "coldstart.lr": 1e-5, "coldstart.warmup": 1,
        "coldstart.ckpt_every": 2, "coldstart.eval_per_id": 1, "coldstart.grid_ids": 2, "coldstart.device": device,
        "rl.coldstart": work / "checkpoints/coldstart", "rl.out_dir": work / "checkpoints/rl",
        "rl.bank": work / "checkpoints/memory_bank.parquet", "rl.metrics": work / "metrics/rl.json",
        "rl.steps": rl_steps, "rl.ids_per_step": 2, "rl.group_size": 4, "rl.eval_per_id": 2, "rl.grid_every": 0,
        "rl.lora_rank": 2 if small else 8, "rl.device": device,
        "synth.checkpoint": work / "checkpoints/rl", "synth.out_dir": work / "data/synthetic",
        "synth.metrics": work / "metrics/synth.json", "synth.per_id": 4, "synth.ids_per_shard": 4,
        "synth.batch": 16, "synth.task_runner": "threads", "synth.workers": 1, "synth.device": device,
        "audit.encoder": work / "checkpoints/reference", "audit.report": work / "reports/privacy",
        "audit.novel_out_dir": work / "data/novel",
        "report.markdown": work / "reports/report.md", "report.embedding": work / "reports/embedding.png",
        "ablation.work_dir": work / "checkpoints/ablation", "ablation.report": work / "reports/ablation",
        "tracking.uri": f"sqlite:///{work / 'mlflow.db'}",
        "compute.precision": precision, "compute.tf32": cuda, "compute.channels_last": cuda,
        "compute.compile": "", "compute.grad_checkpointing": cuda or not small,  # gpu/params.yaml's at real shapes
    }
    return {k: str(v) if isinstance(v, Path) else v for k, v in o.items()}


class _NullRun:
    id = "untracked"

    def log(self, *args, **kwargs):
        pass

    log_params = log_artifact = log


@contextlib.contextmanager
def _null_start_run(*args, **kwargs):
    yield _NullRun()


@contextlib.contextmanager
def untracked():
    """train_seed's MLflow run as a no-op. Without MLflow installed (the GPU image) rgsyn.tracking cannot
    import, so a stand-in module takes its place for the block (no real one exists in such a process)."""
    try:
        import rgsyn.tracking as tracking
    except ModuleNotFoundError as e:
        if e.name != "mlflow":
            raise
        import rgsyn

        stub = types.ModuleType("rgsyn.tracking")
        stub.start_run, stub.Run = _null_start_run, _NullRun
        sys.modules["rgsyn.tracking"] = rgsyn.tracking = stub
        try:
            yield
        finally:
            sys.modules.pop("rgsyn.tracking", None)
            del rgsyn.tracking
        return
    with mock.patch.object(tracking, "start_run", _null_start_run):
        yield


def stages(params_path: Path, small: bool):
    """(name, fn) in dvc.yaml's order; each fn returns a small JSON-able summary."""
    def p(over=None):
        return load_params(params_path, over)

    default = p().rl.algorithm  # the adapter synthesised; the other algorithm runs too, beside it
    other = {"draft": "dpok", "dpok": "draft"}[default]

    def data():
        from rgsyn.data.stage import prepare

        return prepare(p().data)

    def train(stage):
        def run():
            with untracked():
                from rgsyn.downstream.run import save_dirs, train_seed

                q = p()  # the reference stage's second seed is RL's validation encoder
                m = [train_seed(q, stage, s, save=d or False, progress=False)
                     for s, d in zip(getattr(q, stage).train.seeds, save_dirs(q, stage))][0]
            return {k: m[k] for k in ("mAP", "rank1", "train_seconds", "dss_kept", "dss_candidates") if k in m}
        return run

    def generator():
        from rgsyn.generator.dit import save_dit

        bundle = random_bundle(small)
        save_dit(bundle, p().coldstart.pretrained, note="random weights (bench/gpu_pipeline.py)")
        return {"parameters": sum(x.numel() for x in bundle.transformer.parameters())}

    def coldstart():
        from rgsyn.generator.coldstart import run_coldstart

        out = run_coldstart(p(), progress=False)
        return {"after_top1": out["after"]["top1"], "train_seconds": out["train_seconds"]}

    def rl(algorithm):
        def run():
            from rgsyn.rl.loop import run_rl

            q = p()
            over = {"rl.algorithm": algorithm}
            if algorithm != q.rl.algorithm:  # the other algorithm's adapter goes beside the one synthesised
                work = Path(q.rl.out_dir).parent
                over.update({"rl.out_dir": str(work / f"rl-{algorithm}"), "rl.metrics": str(work / f"rl-{algorithm}.json"),
                             "rl.bank": str(work / f"memory_bank-{algorithm}.parquet")})
            out = run_rl(p(over), progress=False)
            return {"algorithm": algorithm, "updates": out["steps_taken"], "kl_last": out["kl_last"],
                    "train_seconds": out["train_seconds"]}
        return run

    def synth():
        from rgsyn.synth.run import synthesize

        m = synthesize(p(), progress=False)["metrics"]
        return {k: m[k] for k in ("samples", "accepted", "shards", "images_per_s_per_worker")}

    return [("data", data), ("reference", train("reference")), ("generator", generator),
            ("coldstart", coldstart), (f"rl_{other}", rl(other)), ("rl", rl(default)), ("synthesize", synth), ("downstream", train("downstream"))]


def machine() -> dict:
    """The host: CPU model, cores torch uses, memory (GiB)."""
    info = {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}
    with contextlib.suppress(OSError, StopIteration):
        info["cpu"] = next(x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                           if x.startswith("model name"))
    with contextlib.suppress(OSError, StopIteration):
        kb = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal:")).split()[1]
        info["memory_gib"] = round(int(kb) / 2 ** 20, 1)
    return info


def run(device: str, small: bool, work: Path, out_json: Path, precision: str = "", steps: int = 0,
        rl_steps: int = 2, start: str = "") -> dict:
    """Every stage in order; stops at the first that raises (its error in the JSON). `start`: resume at
    that stage in a --work folder where the stages before it ran; their entries are taken from the
    existing --json, marked `resumed`."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: CUDA is not available here; use --device cpu --small")
    work.mkdir(parents=True, exist_ok=True)
    over = overrides(work, device, small, precision, steps, rl_steps)
    params_path = write_params(ROOT / "params.yaml", over, work / "params.yaml")
    report = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch": torch.__version__,
              "machine": machine(), "small": small, "precision": over["compute.precision"],
              "sampler_steps": over["sampler.steps"], "rl_steps": rl_steps, "params": str(params_path), "stages": {}, "ok": False}
    todo = stages(params_path, small)
    if start:
        names = [n for n, _ in todo]
        if start not in names:
            raise SystemExit(f"--from {start}: not a stage; one of {names}")
        before = json.loads(out_json.read_text())["stages"] if out_json.exists() else {}
        missing = [n for n in names[:names.index(start)] if n not in before]
        if missing:
            raise SystemExit(f"--from {start}: {out_json} has no entry of {missing}; run them first (same --work)")
        # an earlier stage that failed keeps its error (and `ok` stays false): resuming past the other RL
        # algorithm's stage is possible because nothing after it reads its adapter
        report["stages"] = {n: {**before[n], "resumed": True} for n in names[:names.index(start)]}
        todo = todo[names.index(start):]
    try:
        for name, fn in todo:
            reset_peak(dev)
            reset_peak_rss()
            t0 = time.perf_counter()
            entry = {}
            try:
                entry["result"] = fn()
                sync(dev)
            except Exception as e:  # noqa: BLE001 — recorded, then the run stops
                entry.update(error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()[-4000:])
            except BaseException as e:  # a time limit's SIGTERM (see __main__), Ctrl-C: recorded, re-raised
                report["stages"][name] = {**entry, "error": f"{type(e).__name__}: {e}",
                                          "seconds": round(time.perf_counter() - t0, 3), "peak_gib": peak_gib(dev),
                                          "peak_rss_gib": peak_rss_gib()}
                raise
            entry.update(seconds=round(time.perf_counter() - t0, 3), peak_gib=peak_gib(dev), peak_rss_gib=peak_rss_gib())
            report["stages"][name] = entry
            status = "FAILED " + entry["error"] if "error" in entry else "ok"
            print(f"{name}: {entry['seconds']:.1f} s, peak GiB {entry['peak_gib']}, peak RSS GiB {entry['peak_rss_gib']}: "
                  f"{status}", flush=True)
            if "error" in entry:
                break
        else:
            report["ok"] = not any("error" in e for e in report["stages"].values())
    finally:
        report["seconds"] = round(sum(s["seconds"] for s in report["stages"].values()), 3)
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(report, indent=1, default=str))
    return report


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny DiT, test_resnet at 64x32: the CPU smoke run")
    ap.add_argument("--precision", default="", choices=["", "fp32", "bf16"], help="default: bf16 on CUDA, else fp32")
    ap.add_argument("--steps", type=int, default=0, help="sampler steps (default: 3 when --small or on the CPU, else 10)")
    ap.add_argument("--rl-steps", type=int, default=2, help="RL updates of each algorithm")
    ap.add_argument("--from", dest="start", default="", help="resume at this stage (same --work and --json)")
    ap.add_argument("--json", default="", help="default: $OUT/pipeline.json, else ./pipeline.json")
    ap.add_argument("--work", default="", help="work folder (default: a temporary one, removed after)")
    a = ap.parse_args(argv)
    out = Path(a.json or Path(os.environ.get("OUT", ".")) / "pipeline.json").resolve()
    threads = 1 if a.small and a.device == "cpu" else 0  # see gpu.cpu_threads
    with (contextlib.nullcontext(a.work) if a.work else tempfile.TemporaryDirectory()) as work, cpu_threads(threads):
        report = run(a.device, a.small, Path(work).resolve(), out, a.precision, a.steps, a.rl_steps, a.start)
    if not report["ok"]:
        raise SystemExit(1)
    return report


def _terminated(signum, frame):
    raise SystemExit(f"terminated by signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminated)  # `timeout` in scripts/device_check.sh: the JSON still gets written
    main()
