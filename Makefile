# Nebras — every entry point in one place. `make help` lists the targets.
# The two README commands are `make run` and `make test`; `.ci/run` calls `make test`.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
PY    := $(BIN)/python
# Bitext data is used when present (README: NEBRAS_BITEXT_DIR=../shared/data/bitext).
export NEBRAS_BITEXT_DIR ?= $(if $(wildcard ../shared/data/bitext/intents.csv),../shared/data/bitext,)
# Keep BLAS/torch from oversubscribing a 2-core machine.
export OMP_NUM_THREADS ?= 2
export TF_CPP_MIN_LOG_LEVEL ?= 3
# The CPU budget for the response model that `make run` trains on a fresh machine (minutes).
NLG_QUICK_MINUTES ?= 8
PYTEST_ARGS ?=

.PHONY: help venv train train-rasa train-nlg run actions shell serve test test-slow test-services \
        bench loadtest report evaluate lock validate docker-build clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

venv: $(BIN)/rasa  ## create/reuse .venv from requirements.lock (Python 3.10)
$(BIN)/rasa: requirements.lock pyproject.toml scripts/bootstrap.sh
	@./scripts/bootstrap.sh
	@touch $@

train: train-rasa train-nlg  ## train what `make run` needs (Rasa model + response model), start nothing

train-rasa: venv  ## rasa train (skips when nothing changed)
	$(BIN)/rasa train --fixed-model-name nebras --out models

train-nlg: venv  ## response model: reuse models/nlg/current, else a short labelled run of the default recipe
	@if [ -e models/nlg/current ]; then echo "[nebras] response model: models/nlg/current -> $$(readlink models/nlg/current)"; \
	else $(BIN)/nebras train --recipe quick --max-minutes $(NLG_QUICK_MINUTES) --promote; fi

run: train  ## install, train if needed, start the action server in the background, open rasa shell
	@mkdir -p var
	@$(BIN)/rasa run actions --port 5055 > var/actions.log 2>&1 & echo $$! > var/actions.pid; \
	trap 'kill $$(cat var/actions.pid) 2>/dev/null; rm -f var/actions.pid' EXIT; \
	echo "[nebras] action server on :5055 (log: var/actions.log)"; \
	$(BIN)/rasa shell -m models/nebras.tar.gz

actions: venv  ## run the action server in the foreground (rasa run actions)
	$(BIN)/rasa run actions --port 5055

serve: venv  ## FastAPI server with the web chat on http://127.0.0.1:8000
	$(BIN)/nebras serve

test: venv  ## install and run the whole default test suite (what .ci/run runs)
	@./scripts/install_browser.sh || echo "[nebras] chromium unavailable: browser tests will be skipped"
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-slow: venv  ## the slow tests (training-heavy); .ci/run runs them when time allows
	$(BIN)/pytest -m slow $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && echo "[nebras] no slow tests collected" && rc=0; exit $$rc

validate: venv  ## rasa data validate
	$(BIN)/rasa data validate

evaluate: venv  ## evaluate the current response model on the prepared validation split
	$(BIN)/nebras evaluate --model models/nlg/current --data $$(ls -td models/datasets/*/ | head -1)validation.csv \
	  --train $$(ls -td models/datasets/*/ | head -1)train.csv --out results/evaluation

report: venv  ## HTML report from the latest evaluation/training runs
	$(BIN)/nebras report

bench: venv  ## all benchmarks -> benchmarks/results/*.json
	$(PY) -m benchmarks.run_all

loadtest: venv  ## bounded load test on loopback; last line is a JSON summary
	$(PY) -m benchmarks.loadtest

lock:  ## re-resolve requirements.in into requirements.lock (then commit it)
	$(BIN)/uv pip compile requirements.in --python-version 3.10 --python-platform x86_64-manylinux_2_28 -o requirements.lock.new
	@echo "review requirements.lock.new, keep the header and the '# nodeps:' line, then replace requirements.lock"

docker-build:  ## build the images (needs a Docker engine)
	docker build -t nebras:latest . && docker build -f Dockerfile.actions -t nebras-actions:latest .

clean:  ## remove caches and test results (keeps .venv and models/)
	rm -rf .pytest_cache .rasa results
