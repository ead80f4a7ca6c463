# The two commands: `make demo` (set up, generate the city, materialise everything) and
# `make test` (set up, run the test suite). Both create the virtual environment when needed.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Python caches compiled modules in the venv and the repo's __pycache__ (git-ignored). A machine
# whose environment sets PYTHONDONTWRITEBYTECODE (this one does) would otherwise compile every
# import again in every process: importing the demo's packages cost 31 s of CPU uncached, 18 s cached.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test ui mlflow bench bench-portal portal demo-users clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv && $(BIN)/python -m uv pip install -q --python $(BIN)/python -e '.[dev]' \
	  || { echo 'uv unavailable or failed: installing with pip'; \
	       $(BIN)/python -m pip install -q --upgrade pip && $(BIN)/python -m pip install -q -e '.[dev]'; }
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/toda demo
	$(BIN)/python -m portal.demo_users

demo-users: $(STAMP)
	$(BIN)/python -m portal.demo_users

portal: $(STAMP)
	$(BIN)/toda portal

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

ui: $(STAMP)
	$(BIN)/toda ui

mlflow: $(STAMP)
	$(BIN)/toda mlflow

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

bench-portal: $(STAMP)
	$(BIN)/python bench/portal.py

clean:
	rm -rf .toda
