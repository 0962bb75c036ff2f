#!/usr/bin/env bash
# One prepared check of the paper's sizes on a GPU machine (an H100), in at most about 8 minutes:
#   OUT=/some/folder scripts/device_check.sh      (run from anywhere; default OUT=./device-check)
# 1. install: the project over the machine's own torch (no package index is reachable there): the
#    repo's pyproject pins a torch the image lacks, so pip's dependency install is tried offline and,
#    when it cannot be satisfied, the project goes in with --no-deps; wheels carried in .whl/ (e.g.
#    diffusers, which the image lacks) are installed first. Prints what it did and what is missing.
# 2. nvidia-smi.
# 3. bench/gpu.py --json $OUT/bench.json: DiT-XL/2 synthesis vs DiTPipeline, RL trajectories/s, ResNet-50
#    re-id images/s, peak memory per stage (limit BENCH_TIMEOUT s, default 240; extra args: BENCH_ARGS).
# 4. bench/gpu_pipeline.py --json $OUT/pipeline.json: every stage at real shapes on CUDA (random DiT-XL/2,
#    4 identities, 2 RL steps, one shard, one ResNet-50 epoch), seconds and peak memory per stage
#    (limit PIPELINE_TIMEOUT s, default 180).
# Steps 3 and 4 both run; the exit status is non-zero when any step failed. Everything printed also goes
# to $OUT/log.txt. INSTALL=0 skips pip (rgsyn importable already); BENCH_ARGS="--device cpu --small" and
# PIPELINE_ARGS="--device cpu --small" make the same run a CPU smoke test.
set -euo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
OUT=${OUT:-./device-check}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
PY=${PYTHON:-python3}
step() { echo; echo "== $* ($(date +%T))"; }
status=0

step install
if [ "${INSTALL:-1}" = 0 ]; then
  echo "INSTALL=0: pip skipped"
else
  if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    echo "carried wheels installed into /tmp/site: $(cd .whl && ls -- *.whl | tr '\n' ' ')"
  fi
  if "$PY" -m pip install -q --no-index --no-build-isolation -e . 2> /dev/null; then
    echo "rgsyn installed (editable) with its dependencies"
  elif "$PY" -m pip install -q --no-index --no-build-isolation --no-deps -e .; then
    echo "rgsyn installed (editable, --no-deps): the machine's torch and packages are used as they are"
  else
    echo "pip could not install rgsyn; importing it from $PWD"
  fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
"$PY" - <<'PY'
import importlib.metadata as md
import importlib.util

need = ["torch", "torchvision", "diffusers", "timm", "peft", "safetensors", "pyarrow", "numpy", "PIL", "yaml",
        "tqdm", "scipy", "matplotlib"]
optional = ["mlflow", "prefect", "prefect_dask", "distributed", "dask_cuda", "dvc"]  # orchestration: not needed here
dist = {"PIL": "pillow", "yaml": "pyyaml"}


def version(name):
    try:
        return md.version(dist.get(name, name).replace("_", "-"))
    except md.PackageNotFoundError:
        return "?"


missing = [n for n in need if importlib.util.find_spec(n) is None]
print("found:", ", ".join(f"{n} {version(n)}" for n in need + optional if importlib.util.find_spec(n)))
print("absent (optional):", ", ".join(n for n in optional if importlib.util.find_spec(n) is None) or "none")
if missing:
    raise SystemExit(f"missing: {', '.join(missing)}; carry them as wheels in .whl/ (pip download --no-deps "
                     "--only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl NAME==VERSION)")
import torch

print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}")
PY

step nvidia-smi
nvidia-smi || { echo "nvidia-smi FAILED: no NVIDIA driver or GPU here"; status=1; }

step "bench/gpu.py (limit ${BENCH_TIMEOUT:-240} s)"
# shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
timeout "${BENCH_TIMEOUT:-240}" "$PY" bench/gpu.py --json "$OUT/bench.json" ${BENCH_ARGS:-} \
  || { echo "bench/gpu.py FAILED (exit $?)"; status=1; }

# shellcheck disable=SC2086
step "bench/gpu_pipeline.py (limit ${PIPELINE_TIMEOUT:-180} s)"
timeout "${PIPELINE_TIMEOUT:-180}" "$PY" bench/gpu_pipeline.py --device cuda --json "$OUT/pipeline.json" ${PIPELINE_ARGS:-} \
  || { echo "bench/gpu_pipeline.py FAILED (exit $?; the failing stage is in $OUT/pipeline.json)"; status=1; }

step "done: exit $status; $OUT holds log.txt, bench.json, pipeline.json"
exit $status
