# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := $(BIN)/inspectlab summary unet --input 1,3,480,480

.PHONY: demo test test-slow lint bench reports graphviz clean

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

test-slow: $(VENV)/.installed-dev graphviz
	$(BIN)/python -m pytest -m slow

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_summary.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Example reports in reports/ (CPU latency: slow, several minutes; numbers depend on the machine).
SEGMENTATION := unet deeplabv3plus_resnet50 deeplabv3plus_hrnetv2_w32 lraspp_mobilenet_v3_large matting_mobilenetv3
reports: $(VENV)/.installed
	$(BIN)/inspectlab compare $(SEGMENTATION) --input 1,3,512,512 --latency --warmup 1 --iters 3 --force \
	  --title "Segmentation networks at 1×3×512×512" $(foreach f,md html csv,-o reports/segmentation.$(f))
	$(BIN)/inspectlab compare resnet50 hrnetv2_w32 mobilenet_v3_large --input 1,3,512,512 --latency --warmup 1 \
	  --iters 5 --force --title "Backbones alone at 1×3×512×512" $(foreach f,md html csv,-o reports/backbones.$(f))
	$(BIN)/inspectlab sweep deeplabv3plus_resnet50 --sizes 224,512,1024,2048 --latency --warmup 1 --iters 2 --force \
	  $(foreach f,md html csv,-o reports/sweep_deeplabv3plus_resnet50.$(f))
