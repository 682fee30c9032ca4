# mathtune — the two commands a newcomer needs:
#   make demo   the whole loop on the embedded default model (pull -> data -> eval -> LoRA SFT -> eval -> compare -> report)
#   make test   the test suite (installs everything first)
# Both create .venv on first use. PyTorch: the CPU build when no NVIDIA GPU is present.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MATHTUNE := $(VENV)/bin/mathtune
STAMP := $(VENV)/.mathtune-installed
# On a machine without a GPU, prefer the CPU build of torch: this exact version if the machine
# has it (as our dev/CI machines do), else PyTorch's CPU wheel index. With a GPU, pip's default.
TORCH_CPU_VERSION ?= 2.13.0
PYTEST_ARGS ?=

.PHONY: install demo test test-all bench lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "GPU found: installing the default (CUDA) PyTorch build"; \
	  $(PY) -m pip install -q "torch>=2.5"; \
	else \
	  echo "no GPU: installing the CPU build of PyTorch"; \
	  $(PY) -m pip install -q "torch==$(TORCH_CPU_VERSION)" 2>/dev/null || \
	  $(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(PY) -m pip install -q -e ".[dev,serve]"
	touch $(STAMP)

demo: install
	$(MATHTUNE) demo

# Default suite: unit + integration (integration pulls the embedded default model once).
# Minutes-long checks are marked `slow` and run with `make test-all`.
test: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: install
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/grading.py
	$(PY) benchmarks/data_pipeline.py
	$(PY) benchmarks/eval_throughput.py
	$(PY) benchmarks/train_throughput.py

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

format: install
	$(VENV)/bin/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
