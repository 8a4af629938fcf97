# Newcomer entry points: `make quickstart` and `make test` (both create .venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WORKERS ?= 2

.PHONY: quickstart test test-fast bench clean

# Bytecode is compiled by compileall on both cores (~25 s) rather than by pip on one (~50 s).
# It must exist: where PYTHONDONTWRITEBYTECODE is set (CI images set it), Python would
# otherwise compile torch, sklearn and scipy from source in every process (~15 s each).
# -qq and `|| true`: a few template files inside packages are not Python; pip skips them too.
# Left out: the packages' own test suites (28% of the files, never imported) and pip (34 s, not 49 s).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile -e '.[test]'
	$(BIN)/python -m compileall -qq -j 0 -x '/(tests?|testing/_internal)/|/site-packages/pip/' $(VENV)/lib || true
	touch $(STAMP)

# A search of 45-130 architectures (as many as the machine trains in its window) on the bundled
# digits by $(WORKERS) worker processes, then its Pareto frontier, each point measured whole as
# deployed on this CPU (onnxruntime) beside the all-conv baseline. A second run resumes the same
# study (studies/quickstart.db).
quickstart: $(STAMP)
	$(BIN)/fusionnas search studies/quickstart.toml --workers $(WORKERS)
	$(BIN)/fusionnas pareto studies/quickstart.toml --measure

# One test process per core (pytest-xdist), a test file's tests in one process so that its
# module fixtures (a three-worker study, a PostgreSQL cluster) are built once.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile

bench: $(STAMP)
	$(BIN)/python -m benchmarks.operators
	$(BIN)/python -m benchmarks.latency_model
	$(BIN)/python -m benchmarks.end_to_end
	$(BIN)/python -m benchmarks.train_step

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
