# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := $(BIN)/inspectlab summary unet --input 1,3,480,480

.PHONY: demo test lint bench reports graphviz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(VENV)/.installed $@

graphviz:
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing graphviz (the dot program)"; \
	    (apt-get install -y -q graphviz >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q graphviz >/dev/null)) || \
	    echo "could not install graphviz; run: apt-get install -y graphviz"; \
	  else \
	    echo "graphviz's dot program is missing; run: sudo apt-get install -y graphviz"; \
	  fi; }

demo: $(VENV)/.installed graphviz
	$(DEMO)

test: $(VENV)/.installed-dev graphviz
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_summary.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
