# The README's two commands: `make demo` and `make test`. Both create .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= results/demo

.PHONY: demo test test-slow test-all lint typecheck bench bench-search bench-sensitivity bench-designs clean venv

venv: $(STAMP)

# torch is pinned and installed first: the CPU wheel is on disk, an unpinned torch pulls a CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m tune_app.demo --out $(DEMO_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/trainer_overhead.py
	$(BIN)/python benchmarks/tune_overhead.py
	$(BIN)/python benchmarks/search_efficiency.py

# plan vs PBT vs PB2 on five data sets, two seeds each, each winner certified on 5 fresh seeds:
# about an hour on 2 CPUs before the certification, which adds up to as much again
bench-search: $(STAMP)
	$(BIN)/python benchmarks/pbt_vs_baseline.py

# each space parameter at its bounds, certified against the plan on five sets (~20 min, 2 CPUs)
bench-sensitivity: $(STAMP)
	$(BIN)/python benchmarks/sensitivity.py

# selection rules, population 4 vs 8, half-phase rounds, the full space, at equal cost, every
# winner certified (~80 min, 2 CPUs)
bench-designs: $(STAMP)
	$(BIN)/python benchmarks/search_designs.py --space-file full-space=search_spaces/modifications_full.yaml

clean:
	rm -rf $(VENV) results/demo .pytest_cache .mypy_cache .ruff_cache
