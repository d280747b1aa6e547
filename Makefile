# loopwise — the two commands: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: chromium run test test-slow test-all test-unit test-integration bench bench-all typecheck install clean chaos

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "loopwise needs Python 3.11, found %s" % sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,litellm,otlp,openfeature]'
	@touch $(STAMP)

## The main job: embedded broker + topics + worker + the simulator's closed loop, ending with its scorecard.
run: $(STAMP)
	$(BIN)/loopwise up --simulate outage --duration 20m --rate 100 --speed 10 --report reports/run.json

## All tests: mypy strict, then unit, contract and integration tests (real broker: env → Docker → embedded).
test: $(STAMP) chromium
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q -n 2 tests/unit tests/contract
	$(BIN)/python -m pytest -q tests/integration

## Debian's chromium for the console's browser tests (idempotent; apt-get as root when missing).
chromium:
	@sh .ci/install-chromium.sh

## The long integration tests (several workers, kill -9 hand-overs, LiteLLM, lake crash): minutes each.
test-slow: $(STAMP) chromium
	$(BIN)/python -m pytest -q -m slow

## Everything, slow tests included.
test-all: $(STAMP) chromium
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q -m ""

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit tests/contract

test-integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration

## Throughput and latency (issue 7 figures, printed with their ceilings and targets; writes bench/results.json).
bench: $(STAMP)
	$(BIN)/python -m bench.throughput

## Every component benchmark (simulator speed, detectors, incidents, experiments, routing, remediation).
bench-all: $(STAMP)
	$(BIN)/python -m bench

typecheck: $(STAMP)
	$(BIN)/python -m mypy

## Kills, broker pauses, fuzz and hostile commands against the embedded broker (CHAOS_ARGS="--kills 20 --pause 30 120").
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .loopwise .pytest_cache build *.egg-info
