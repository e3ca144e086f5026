# lowcarb developer entry points. Every target creates .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8888

.PHONY: serve test lint typecheck pytest e2e bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/lowcarb serve --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

# End-to-end against a real etcd, kube-apiserver and kube-scheduler on loopback (tests/e2e).
# Binaries: KUBE_BIN_DIR (default .kube-bin), unpacked there from ../shared/kube-bin and checked
# against its SHA256SUMS when missing. Without them: a clear note and no tests, or an error in CI.
e2e: $(STAMP)
	@$(if $(KUBE_BIN_DIR),export KUBE_BIN_DIR=$(abspath $(KUBE_BIN_DIR));) \
	$(BIN)/python tests/e2e/kubebin.py prepare; rc=$$?; \
	if [ $$rc -eq 3 ]; then exit 0; elif [ $$rc -ne 0 ]; then exit $$rc; fi; \
	LOWCARB_E2E=1 $(BIN)/python -m pytest -q -rxX tests/e2e

bench: $(STAMP)
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/fragmentation.py --quick
	$(BIN)/python benchmarks/placement.py --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .kube-bin
