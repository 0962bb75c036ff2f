# Quick start: `make run` (the default pipeline on the embedded dataset), `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PYTHONUNBUFFERED := 1

.PHONY: install run test clean

# torch==2.14.1 / torchvision==0.29.1 are pinned in pyproject.toml: they lie on local disk here
# (a CUDA build); the 2.13 CPU wheel breaks PyPI's torchvision.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The default pipeline up to the synthetic dataset: data -> baseline (reference encoder) -> coldstart
# (on the committed, frozen prior) -> rl -> synthesize. The downstream ladder is not wired yet.
run: install
	dvc repro synthesize
	@echo "results: metrics/*.json (dvc metrics show), shards in data/synthetic, audit in reports/synth_audit.json"
	@echo "runs: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db"
	@dvc metrics show

test: install
	$(PY) -m pytest

clean:
	rm -rf data/embedded data/index.parquet data/index.json checkpoints mlruns mlflow.db
