# Every target bootstraps .venv from nothing: torch (CPU wheel) first, then the rest under
# constraints.txt so that no package can pull a CUDA build of torch. `make demo` installs only
# what the demo needs (torch and the [demo] extra); `make test` adds everything else (the
# [dev] and [all] extras and the seed package the compatibility tests compare against).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint typecheck format venv clean

venv: $(TEST_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[demo]"
	touch $(DEMO_STAMP)

$(TEST_STAMP): $(DEMO_STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,all]"
	$(PY) -m pip install --quiet -c constraints.txt --no-deps early-stopping-pytorch==1.0.10
	touch $(TEST_STAMP)

demo: $(DEMO_STAMP)
	$(VENV)/bin/earlystop demo --out demo-out

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

typecheck: $(TEST_STAMP)
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q

format: $(TEST_STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) demo-out .pytest_cache .mypy_cache .ruff_cache .hypothesis
