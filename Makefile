# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := $(BIN)/inspectlab summary unet --input 1,3,480,480

.PHONY: demo test test-slow lint bench reports graphviz chromium clean coverage docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(VENV)/.installed $@

# System programs some tests and commands use: installed with apt-get when run as root, else the command to run
# is printed (the tests that need them then skip). $(call system_package,PROGRAM,DEBIAN PACKAGES)
define system_package
	@command -v $(1) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $(2)"; \
	    (apt-get install -y -q $(2) >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q $(2) >/dev/null)) || \
	    echo "could not install $(2); run: apt-get install -y $(2)"; \
	  else \
	    echo "$(1) is missing; run: sudo apt-get install -y $(2)"; \
	  fi; }
endef

graphviz:  # the dot program: `inspectlab graph` renders with it
	$(call system_package,dot,graphviz)

chromium:  # headless Chromium: the test that opens the HTML reports as a user would
	$(call system_package,chromium,chromium chromium-driver)

demo: $(VENV)/.installed graphviz
	$(DEMO)

test: $(VENV)/.installed-dev graphviz chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-slow: $(VENV)/.installed-dev graphviz
	$(BIN)/python -m pytest -m slow

docs: $(VENV)/.installed-dev graphviz  # the command transcripts in README.md and docs/*.md, run anew
	$(BIN)/python docs/transcripts.py

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_summary.py
	$(BIN)/python benchmarks/bench_rf.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# docs/coverage.md: every analysis on every torchvision model, 98 timm architectures, smp × 5 encoders and 12
# transformers configs, each model in a worker process (34 min with JOBS=1 on a shared 2-core machine).
JOBS ?= 1
coverage: $(VENV)/.installed-dev graphviz
	$(BIN)/python benchmarks/coverage.py --jobs $(JOBS)

# Example reports in reports/ (CPU latency: slow, several minutes; numbers depend on the machine).
SEGMENTATION := unet deeplabv3plus_resnet50 deeplabv3plus_hrnetv2_w32 lraspp_mobilenet_v3_large matting_mobilenetv3
reports: $(VENV)/.installed
	$(BIN)/inspectlab compare $(SEGMENTATION) --input 1,3,512,512 --latency --warmup 1 --iters 3 --force \
	  --title "Segmentation networks at 1×3×512×512" $(foreach f,md html csv,-o reports/segmentation.$(f))
	$(BIN)/inspectlab compare resnet50 hrnetv2_w32 mobilenet_v3_large --input 1,3,512,512 --latency --warmup 1 \
	  --iters 5 --force --title "Backbones alone at 1×3×512×512" $(foreach f,md html csv,-o reports/backbones.$(f))
	$(BIN)/inspectlab sweep deeplabv3plus_resnet50 --sizes 224,512,1024,2048 --latency --warmup 1 --iters 2 --force \
	  $(foreach f,md html csv,-o reports/sweep_deeplabv3plus_resnet50.$(f))
