# Quick start: `make run` (the default pipeline on the embedded dataset), `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PYTHONUNBUFFERED := 1
# no network at run time: Prefect's telemetry call would only log errors
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install run run-face run-gpu serve ui ablation ablation-face push pull test clean

# torch==2.14.1 / torchvision==0.29.1 are pinned in pyproject.toml: they lie on local disk here
# (a CUDA build); the 2.13 CPU wheel breaks PyPI's torchvision.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The whole default pipeline, full method, one seed: data -> reference -> coldstart (on the committed,
# frozen prior) -> rl -> synthesize -> downstream -> report.
run: install
	scripts/with_prefect_server.sh dvc repro report
	@echo "results: reports/report.md (real only vs real + synthetic), reports/privacy.md (the audit),"
	@echo "         reports/*.png, metrics/*.json (dvc metrics show), shards in data/synthetic"
	@echo "runs:    make ui (MLflow UI at http://127.0.0.1:5000, opened on the rgsyn experiment's runs)"
	@cat reports/report.md

# The face pipeline (face/dvc.yaml on face/params.yaml; outputs under face/ folders, never the re-id ones).
run-face: install
	scripts/with_prefect_server.sh dvc repro face/dvc.yaml:report
	@echo "results: reports/face/report.md (five pair sets + the bias table), reports/face/privacy.md"
	@cat reports/face/report.md

# The paper's sizes on GPUs (gpu/dvc.yaml on gpu/params.yaml: DiT-XL/2, ResNet-50 at 256x128, bf16; outputs
# under gpu/ folders). gpu/params.yaml's header lists what must be on disk first.
run-gpu: install
	scripts/with_prefect_server.sh dvc repro gpu/dvc.yaml:report
	@cat reports/gpu/report.md

# The MLflow UI, opened on the experiment's runs and their charts (not MLflow's GenAI overview).
ui: install
	@echo "MLflow UI: $$($(PY) -m rgsyn.tracking)"
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

# A local Prefect server (http://127.0.0.1:4200) + a serve() deployment of flows/pipeline.py whose
# parameters can be set per run from the UI; Ctrl-C stops both.
PREFECT_PORT ?= 4200
# The UI reads its API address from the server's environment: set both before the server starts, or
# a PREFECT_PORT other than 4200 gives a UI that cannot reach its API.
serve: install
	@export PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api; \
	 export PREFECT_UI_API_URL=$$PREFECT_API_URL; \
	 prefect server start --host 127.0.0.1 --port $(PREFECT_PORT) > prefect-server.log 2>&1 & \
	 server=$$!; trap 'kill $$server' EXIT INT TERM; \
	 until curl -sf $$PREFECT_API_URL/health > /dev/null; do sleep 1; done; \
	 echo "Prefect UI: http://127.0.0.1:$(PREFECT_PORT)  (deployment pipeline/rgsyn)"; \
	 $(PY) -m flows.serve

# The paper's ablation ladder (Fig. 5) on the embedded default, ablation.seeds: reports/ablation.{md,json,png}.
ablation: install
	scripts/with_prefect_server.sh dvc repro ablation
	@cat reports/ablation.md

# The face ladder (real_only .. full, ablation.seeds of face/params.yaml): reports/face/ablation.{md,json,png}.
ablation-face: install
	scripts/with_prefect_server.sh dvc repro face/dvc.yaml:ablation
	@cat reports/face/ablation.md

# Versions a team shares: push / pull the DVC-cached outputs of TARGET and every stage before it (the
# data index, the checkpoints, data/synthetic with its card) to / from the default DVC remote: the folder
# ../rgsyn-remote beside the clone (.dvc/config; README.md says how to name another). TARGET=
# face/dvc.yaml:report for the face pipeline's, TARGET= for every stage's.
TARGET ?= report
push: install
	dvc push --with-deps $(TARGET)

pull: install
	dvc pull --with-deps $(TARGET)

test: install
	$(PY) -m pytest

clean:
	rm -rf data/embedded data/index.parquet data/index.json data/synthetic data/synthetic-novel checkpoints mlruns mlflow.db runs
