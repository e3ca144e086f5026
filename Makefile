# lowcarb developer entry points. Every target creates .venv when it is missing and installs
# exactly what requirements.lock pins (hash-checked); `make lock` refreshes the lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8888
# The lock tool, pinned; `make lock` installs it beside the venv's packages, not among them.
UV_VERSION := 0.13.9
UV := $(VENV)/tools/uv-$(UV_VERSION)/bin/uv

.PHONY: serve test lint typecheck pytest pytest-future e2e bench bench-quick lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The lock pins every runtime and dev dependency (pyproject.toml's dependencies and its `dev`
# extra) plus pip and the build backend, with hashes: pip installs those exact files and
# resolves nothing. The project itself goes in editable with --no-deps and no build isolation
# (setuptools and wheel come from the lock), and `pip check` fails if pyproject.toml asks for
# something the lock does not cover (run `make lock`).
$(STAMP): $(LOCK) pyproject.toml | $(BIN)/python
	@echo "installing from $(LOCK) ($$(grep -c '^[a-z]' $(LOCK)) pinned requirements, hashes required)"
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
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

# The suite with the system clock 400 days ahead: no test may depend on today's date.
pytest-future: $(STAMP)
	@if ! command -v faketime >/dev/null; then \
		echo "pytest-future: skipped: faketime is not installed (Debian: apt-get install faketime)"; \
	else \
		echo "faketime -f '+400d' $(BIN)/python -m pytest -q"; \
		faketime -f '+400d' $(BIN)/python -m pytest -q; \
	fi

test: lint typecheck pytest

# End-to-end against a real etcd, kube-apiserver and kube-scheduler on loopback (tests/e2e).
# Binaries: KUBE_BIN_DIR (default .kube-bin), unpacked there from ../shared/kube-bin and checked
# against its SHA256SUMS when missing. Without them: a clear note and no tests, or an error in CI.
e2e: $(STAMP)
	@$(if $(KUBE_BIN_DIR),export KUBE_BIN_DIR=$(abspath $(KUBE_BIN_DIR));) \
	$(BIN)/python -m tests.e2e.kubebin prepare; rc=$$?; \
	if [ $$rc -eq 3 ]; then exit 0; elif [ $$rc -ne 0 ]; then exit $$rc; fi; \
	LOWCARB_E2E=1 $(BIN)/python -m pytest -q -rxX tests/e2e

bench: $(STAMP)
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/fragmentation.py --quick
	$(BIN)/python benchmarks/placement.py --quick

$(UV): | $(BIN)/python
	$(BIN)/python -m pip install --quiet --target $(VENV)/tools/uv-$(UV_VERSION) "uv==$(UV_VERSION)"

# Re-resolve the lock from pyproject.toml for every platform and Python >= 3.11, keeping the
# current pins that still fit; `make lock UPGRADE=1` moves every pin to the newest release.
# pip and [build-system] requires are locked too, so the install above needs nothing else.
lock: | $(UV)
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], "pip", sep="\n")' \
	  | $(UV) pip compile pyproject.toml - --extra dev --universal --python-version 3.11 \
	    --generate-hashes --custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade) \
	    --quiet -o $(LOCK)
	@echo "$(LOCK): $$(grep -c '^[a-z]' $(LOCK)) pinned requirements"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .kube-bin
