# diffnb: the two commands a reader needs are `make book` and `make test`.
# Both create .venv when it is missing and install the package with its book extras.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export DIFFNB_SCALE ?= quick
# Per-cell time limit for notebooks run through nbmake (seconds)
NB_TIMEOUT ?= 900
PYTEST_ARGS ?=

.PHONY: help install check-scale test unit notebooks book book-rendered lab bench lint clean

help:
	@echo "make book      execute every notebook at DIFFNB_SCALE (default quick) and build _build/html"
	@echo "make test      unit tests and every notebook through nbmake"
	@echo "make lab       open the notebooks in JupyterLab"
	@echo "make bench     run the benchmarks in benchmarks/"
	@echo "make lint      ruff on the package, tests, benchmarks and notebooks"
	@echo "DIFFNB_SCALE=quick|full|paper selects the workload."

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "diffnb needs Python 3.10 or newer; set PYTHON=python3.x")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[book]"
	@touch $(STAMP)

install: $(STAMP)

check-scale: $(STAMP)
	@$(BIN)/python -m diffnb.config

test: check-scale
	$(BIN)/python -m pytest tests book --nbmake --nbmake-timeout=$(NB_TIMEOUT) $(PYTEST_ARGS)

unit: check-scale
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

notebooks: check-scale
	$(BIN)/python -m pytest book --nbmake --nbmake-timeout=$(NB_TIMEOUT) $(PYTEST_ARGS)

book: check-scale
	$(BIN)/jupyter-book build book/ -W -n --keep-going
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

# Render notebooks that already hold outputs (CI runs them once, through `make test PYTEST_ARGS=--overwrite`)
book-rendered: check-scale
	@mkdir -p _build
	sed -e 's/^  execute_notebooks: force/  execute_notebooks: "off"/' _config.yml > _build/_config.rendered.yml
	$(BIN)/jupyter-book build book/ --config _build/_config.rendered.yml -W -n --keep-going
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

lab: $(STAMP)
	$(BIN)/jupyter lab book/

bench: $(STAMP)
	@for script in benchmarks/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check diffnb tests benchmarks book conftest.py
	$(BIN)/ruff format --check diffnb tests benchmarks conftest.py

clean:
	rm -rf _build .pytest_cache
