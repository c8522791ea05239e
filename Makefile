# Two commands on a fresh machine: `make run` (set up + the default study) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-all bench setup clean

setup: $(STAMP)

# Re-installs when pyproject.toml changes. pip picks torch/torchvision from the machine's local wheels.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev,bench]' > $(VENV)/pip.log 2>&1 || (cat $(VENV)/pip.log; exit 1)
	$(PY) -c "import sgdexp, torch, hydra, wandb"
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m sgdexp

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m ""

bench: $(STAMP)
	$(PY) scripts/bench_overhead.py
	@for b in scripts/bench_*.py; do [ $$b = scripts/bench_overhead.py ] || $(PY) $$b --quick; done

clean:
	rm -rf outputs/2* multirun .pytest_cache
