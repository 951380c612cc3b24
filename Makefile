# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create (or reuse) .venv and install the project into it, editable.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python

.PHONY: demo test test-fast venv clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The whole pipeline on synthetic STARE-format images (runs/demo); a rerun reuses what is done.
demo: $(STAMP)
	$(VENV)/bin/vessel-run --config configs/demo.config --workdir runs/demo

# pytest exits 5 when it collects no test: that must fail, so it is not special-cased.
# --durations: the slowest tests in every CI log, to keep the suite inside its time budget.
test: $(STAMP)
	$(PY) -m pytest -q --durations=15 tests

# The suite without the end-to-end runs marked `slow` (tests/README.md).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

clean:
	rm -rf runs .pytest_cache
