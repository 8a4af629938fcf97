# Newcomer entry points: `make quickstart` and `make test` (both create .venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: quickstart test test-fast bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Until the search exists (issue 6), the quickstart runs the operator benchmark.
quickstart: $(STAMP)
	$(BIN)/python -m benchmarks.operators --quick

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.operators
	$(BIN)/python -m benchmarks.latency_model

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
