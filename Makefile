# Two entry points on a fresh machine: `make demo` and `make test`.
# TORCH_SPEC pins the CPU wheel available on the development machines; on a cluster, install the
# CUDA build of torch first (or override: make setup TORCH_SPEC="torch==2.13.0").
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test demo bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/emulator demo --out demo_out

bench: $(STAMP)
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) demo_out .pytest_cache
