# The two commands of the README; each sets itself up from nothing.
#   make demo   - venv, torch (CPU, pinned, first), patchlib; renders the flagship patch
#   make test   - venv, torch, patchlib; runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.patchlib-installed
# torch goes in first and pinned: a looser requirement pulls a CUDA build
TORCH  ?= torch==2.13.0

.PHONY: setup demo test test-all bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	@mkdir -p out
	$(VENV)/bin/patchlib render patches/flagship.yaml -o out/flagship.wav --spectrogram out/flagship.png
	$(VENV)/bin/patchlib graph patches/flagship.yaml -o out/flagship-graph.png

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m ""

bench: $(STAMP)
	$(VENV)/bin/patchlib bench

docs: $(STAMP)
	$(VENV)/bin/patchlib nodes --markdown > docs/nodes.md

clean:
	rm -rf out .pytest_cache
