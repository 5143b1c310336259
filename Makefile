# memory-layer: `make run` serves on the embedded default, `make test` runs every check.
#
# Both create .venv on first use. torch is installed first, pinned, so the CPU build is the one
# that lands (set TORCH_INDEX_URL to a CPU-only wheel index where the default index would pick a
# CUDA build).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
TORCH_INDEX_URL ?=
STAMP := $(VENV)/.installed

.PHONY: run test coverage install lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/python -m pip install --quiet -e '.[dev,gemini]'
	touch $(STAMP)

install: $(STAMP)

## Serve on 127.0.0.1:8000 with the embedded PostgreSQL and the local model (Ctrl-C stops both).
run: $(STAMP)
	$(BIN)/memory-layer serve

## Lint, type-check and run the whole test suite against real PostgreSQL + pgvector and Redis.
test: $(STAMP)
	$(BIN)/python scripts/run_tests.py

## The same checks, with the suite's coverage of src/memory_layer: a summary on the terminal and
## an HTML report in htmlcov/index.html. No floor: coverage is read, never enforced.
coverage: $(STAMP)
	rm -rf htmlcov .coverage .coverage.*
	$(BIN)/python scripts/run_tests.py --cov --cov-report=term --cov-report=html

bench: $(STAMP)
	$(BIN)/python scripts/bench_api.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache htmlcov .coverage .coverage.*
