# The two commands that matter: `make demo` and `make test`. Both set everything up
# on a fresh machine (virtual env, Kafka jars) and reuse what is already cached.
SHELL := /bin/bash
PY ?= python3
UV := $(PY) -m uv
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.aitl-synced
JARS_STAMP := $(HOME)/.cache/aitl/kafka-4.1.2/.complete

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export RAY_USAGE_STATS_ENABLED := 0
export PYTHONUNBUFFERED := 1

.PHONY: setup test test-unit test-faults lint demo bench bench-quality kafka-jars system-deps clean

## setup: the virtual env (rebuilt only when uv.lock changes) and the Kafka jars
setup: $(STAMP) $(JARS_STAMP)

system-deps:
	@command -v java >/dev/null && command -v mvn >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless maven)
	@command -v promtool >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus) || \
	  echo "promtool unavailable: its tests will skip"
	@command -v chromium >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || \
	  echo "chromium unavailable: the console's browser tests will skip"

$(STAMP): uv.lock pyproject.toml
	@$(PY) -m uv --version >/dev/null 2>&1 || $(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(UV) sync --frozen --python $(PY)
	@touch $(STAMP)

$(JARS_STAMP): deploy/kafka/pom.xml | system-deps $(STAMP)
	$(BIN)/python -m aitl kafka jars

kafka-jars: $(JARS_STAMP)

## test: unit, integration (real Kafka broker, started by the tests; the console in Debian's chromium) and e2e
test: setup system-deps
	$(BIN)/python -m pytest -q --timeout=900 tests

## test-faults: the fault suite: a seeded nemesis against a 3-broker cluster and two workers
## (>= 30 faults, ~15 min); writes bench/results/faults.json and the README's fault table
test-faults: setup
	AITL_FAULTS_OUT=bench/results/faults.json $(BIN)/python -m pytest -q --timeout=2400 \
	  --run-nemesis -s tests/faults/test_nemesis.py

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

## lint: style (ruff), the layers (import-linter, contracts in pyproject.toml), types (mypy)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

## demo: the flywheel end to end on the project's own demo data
demo: setup
	$(BIN)/python -m aitl demo --timings-out bench/results/demo.json --readme README.md

## bench: speed and memory benchmarks (tables + bench/results/*.json)
bench: setup
	$(BIN)/python -m bench

## bench-quality: the flywheel on the DSTC11 hotel data (../shared/data/dstc11-hotel): 4 cycles, the judge ablation over 3 seeds, the oracle and the generator, under an hour on 2 CPUs
bench-quality: setup
	$(BIN)/python -m aitl benchmark --dataset ../shared/data/dstc11-hotel --out bench/results/quality.json --readme README.md

clean:
	-$(BIN)/python -m aitl kafka stop
	rm -rf .aitl
