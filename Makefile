# Two commands do all set-up on a fresh machine:
#   make run    installs everything into .venv and opens the TUI
#   make test   installs everything into .venv and runs the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tensorscope-installed

.PHONY: install run test bench clean dot

install: $(STAMP) dot

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# torch first, so the project's "torch>=2.3" is already met and pip never picks a
	@# CUDA build on its own. A local CPU wheel (pip's find-links) wins when present;
	@# otherwise, on a machine without an NVIDIA driver, use PyTorch's CPU-only index.
	@if ! $(PY) -c "import torch" 2>/dev/null; then \
	  if $(PY) -m pip download -q --no-deps --no-index -d /tmp/tensorscope-probe torch==2.13.0 >/dev/null 2>&1 \
	     || command -v nvidia-smi >/dev/null 2>&1 || [ "$$(uname)" = Darwin ]; then \
	    $(PY) -m pip install -q torch==2.13.0 ; \
	  else \
	    $(PY) -m pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu ; \
	  fi ; \
	fi
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

# graphviz's `dot` draws the Graph screen's layout and exports SVG/PNG.
dot:
	@command -v dot >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz) >/dev/null ; \
	  else \
	    echo "tensorscope: graphviz's 'dot' is missing; install it with: sudo apt-get install graphviz  (macOS: brew install graphviz)" ; \
	  fi ; }

run: install
	$(VENV)/bin/tensorscope

test: install
	$(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
