# glacgrid: two set-up commands, `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.glacgrid-installed
PYTEST_ARGS ?=
# `make test` runs the tests on this many pytest-xdist workers (2: the CI machine's cores; 0: in one
# process). --dist loadgroup with tests/conftest.py keeps the tests that share a fixture, and the Slurm
# tests, on one worker each.
PYTEST_WORKERS ?= 2

.PHONY: install demo test docs hef alps clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "glacgrid needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU-only torch first, pinned by the constraints file (an unpinned torch pulls CUDA packages)
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@if $(BIN)/python -m pip list 2>/dev/null | grep -qi '^nvidia-'; then \
		echo "error: CUDA packages were installed; check constraints.txt" >&2; exit 1; fi
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/glacgrid demo --out demo-output

test: install
	$(BIN)/sphinx-build -q -W --keep-going -b html docs docs/_build/html
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

docs: install
	$(BIN)/sphinx-build -q -W --keep-going -b html docs docs/_build/html

hef: install
	$(BIN)/glacgrid run examples/hef.toml

# alps: all 3,927 Alps glaciers as one glacier domain on a synthetic climate (a scale demonstration)
alps: install
	$(BIN)/python -c 'import tomllib; from glacgrid.testing import write_alps_climate; \
		p = tomllib.load(open("examples/alps.toml", "rb"))["period"]; \
		write_alps_climate("alps-output/climate", p["start"], p["end"])'
	$(BIN)/glacgrid run examples/alps.toml

clean:
	rm -rf $(VENV) demo-output hef-output .pytest_cache
