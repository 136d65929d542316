# Every target has a `## comment`; `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
# Rebuilt whenever the pins change; the project itself is installed editable.
ENV_STAMP := $(VENV)/.env-ready

$(ENV_STAMP): pyproject.toml requirements.lock requirements-discovery.lock
	@echo "Building the environment in $(VENV) (first run only: a few minutes)..."
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.lock
	$(PYTHON) -m pip install --quiet --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	@# Google's discovery documents (JSON only, never imported): what every stand-in is held to (fidelity/).
	$(PYTHON) -m pip install --quiet --no-deps --upgrade --target $(VENV)/google-discovery -r requirements-discovery.lock
	@touch $(ENV_STAMP)

.PHONY: help env run test lint compile bench schema functions endpoint console clean demo-drift

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

env: $(ENV_STAMP) ## Build the virtual environment (done for you by run and test)

run: $(ENV_STAMP) ## Run the training pipeline locally end to end (DATA_URI=... for another partition)
	$(PYTHON) runner.py --run local $(if $(DATA_URI),--data-uri $(DATA_URI))

# checkov (terraform/ policy scan, tests/delivery/) lives in its own venv: its pins conflict with ours.
CHECKOV := .tools/checkov/bin/checkov

$(CHECKOV): requirements-checkov.lock
	$(PYTHON_BOOTSTRAP) -m venv .tools/checkov
	.tools/checkov/bin/python -m pip install --quiet -r requirements-checkov.lock
	@touch $(CHECKOV)

.PHONY: tools check-compiled
tools: $(CHECKOV) ## Build checkov's own venv in .tools/ (done for you by test)

# Two worker processes (pytest-xdist), each taking a whole test file at a time: a file's module fixtures
# (a pipeline run, an emulator) are built once, in one worker. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

test: $(ENV_STAMP) $(CHECKOV) lint ## Lint, then every test (what CI runs; TEST_WORKERS=0 for one process)
	$(PYTHON) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

lint: $(ENV_STAMP) ## ruff over the whole tree
	$(VENV)/bin/ruff check .

compile: $(ENV_STAMP) ## Compile every pipeline into compiled/*.json
	$(PYTHON) runner.py --compile

check-compiled: $(ENV_STAMP) ## Fail if compiled/ is not what the code compiles to (CI; `make compile` fixes it)
	rm -rf build/compiled-check
	$(PYTHON) runner.py --compile --output build/compiled-check > /dev/null
	diff -r compiled build/compiled-check && echo "compiled/ is current"

bench: $(ENV_STAMP) ## Print the benchmark figures the docs record
	$(PYTHON) -m bench

schema: $(ENV_STAMP) ## Infer the data set's schema from the sample (first use only; then review it)
	$(PYTHON) runner.py --infer-schema

endpoint: $(ENV_STAMP) ## Run the local prediction endpoint (deploy first: python runner.py endpoint deploy MODEL_DIR)
	$(PYTHON) runner.py endpoint serve

console: $(ENV_STAMP) ## The local console on http://127.0.0.1:8095: runs and their DAGs, models, endpoint, drift, batch (PORT=...)
	$(PYTHON) runner.py console $(if $(PORT),--port $(PORT))

functions: $(ENV_STAMP) ## Build each Cloud Function's deploy folder under build/functions/ (docs/triggers.md)
	$(PYTHON) -m triggers.package --all

demo-drift: $(ENV_STAMP) ## Drift demo: train on 2013, replay 2016 traffic, monitor, alert via Pub/Sub, retrain (README)
	$(PYTHON) -m monitoring.demo

clean: ## Remove local mode's state (pipeline root, registry, endpoint, reports) and build/
	rm -rf local/ build/
