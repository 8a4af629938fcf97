# Newcomer entry points: `make quickstart` and `make test` (both create .venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WORKERS ?= 2

.PHONY: quickstart test test-fast bench clean

# --no-compile: byte-compiling torch's files took ~50 s of a ~105 s install; Python compiles
# the modules it imports on first use instead (~2 s).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile -e '.[test]'
	touch $(STAMP)

# A search of 80+ architectures on the bundled digits by $(WORKERS) worker processes, then
# its Pareto frontier. A second run resumes the same study (studies/quickstart.db).
quickstart: $(STAMP)
	$(BIN)/fusionnas search studies/quickstart.toml --workers $(WORKERS)
	$(BIN)/fusionnas pareto studies/quickstart.toml

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.operators
	$(BIN)/python -m benchmarks.latency_model
	$(BIN)/python -m benchmarks.end_to_end

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
