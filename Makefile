# glacgrid: two set-up commands, `make demo` and `make test`. Both create .venv on first use: `make demo`
# installs glacgrid and its base dependencies only, `make test` adds the test extra (Beam, dask-jobqueue,
# dask-mpi + MPICH, GRIB, dask-gateway-server, compliance-checker, the docs and notebook tooling).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BASE   := $(VENV)/.glacgrid-base
STAMP  := $(VENV)/.glacgrid-installed
PYTEST_ARGS ?=
# `make test` runs the tests on this many pytest-xdist workers (2: the CI machine's cores; 0: in one
# process). --dist loadgroup with tests/conftest.py keeps the tests that share a fixture, and the Slurm
# tests, on one worker each.
PYTEST_WORKERS ?= 2
NO_CUDA = if $(BIN)/python -m pip list 2>/dev/null | grep -qi '^nvidia-'; then \
		echo "error: CUDA packages were installed; check constraints.txt" >&2; exit 1; fi

.PHONY: install install-base demo test docs hef alps clean

# the base set: what `glacgrid demo`, `glacgrid run` and the examples need
$(BASE): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "glacgrid needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU-only torch first, pinned by the constraints file (an unpinned torch pulls CUDA packages)
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	@$(NO_CUDA)
	touch $(BASE)

# the full set: the base set and the test extra
$(STAMP): $(BASE)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@$(NO_CUDA)
	touch $(STAMP)

install-base: $(BASE)

install: $(STAMP)

demo: install-base
	$(BIN)/glacgrid demo --out demo-output

test: install
	$(BIN)/sphinx-build -q -W --keep-going -b html docs docs/_build/html
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

docs: install
	$(BIN)/sphinx-build -q -W --keep-going -b html docs docs/_build/html

hef: install-base
	$(BIN)/glacgrid run examples/hef.toml

# alps: all 3,927 Alps glaciers as one glacier domain on a synthetic climate (a scale demonstration)
alps: install-base
	$(BIN)/python -c 'import tomllib; from glacgrid.testing import write_alps_climate; \
		p = tomllib.load(open("examples/alps.toml", "rb"))["period"]; \
		write_alps_climate("alps-output/climate", p["start"], p["end"])'
	$(BIN)/glacgrid run examples/alps.toml

clean:
	rm -rf $(VENV) demo-output hef-output .pytest_cache
