# lowcarb developer entry points. Every target creates .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8888

.PHONY: serve test lint typecheck pytest pytest-future bench bench-quick clean

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

# The suite with the system clock 400 days ahead: no test may depend on today's date.
pytest-future: $(STAMP)
	@if ! command -v faketime >/dev/null; then \
		echo "pytest-future: skipped: faketime is not installed (Debian: apt-get install faketime)"; \
	else \
		echo "faketime -f '+400d' $(BIN)/python -m pytest -q"; \
		faketime -f '+400d' $(BIN)/python -m pytest -q; \
	fi

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/fragmentation.py --quick
	$(BIN)/python benchmarks/placement.py --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
