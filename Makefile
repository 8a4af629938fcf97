# Newcomer entry points: `make quickstart` and `make test` (both create .venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WORKERS ?= 2

.PHONY: quickstart test test-fast bench kernels clean

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

# The native kernels (fusionnas/kernels: C++ for this machine's CPU, and the OpenVINO extension),
# rebuilt when their sources change. If they do not compile, the build says why and the package
# keeps working on the operators' reference forms.
KERNELS := fusionnas/kernels/lib/.built
KERNEL_SOURCES := $(wildcard fusionnas/kernels/CMakeLists.txt fusionnas/kernels/csrc/* fusionnas/kernels/openvino/*)
$(KERNELS): $(STAMP) $(KERNEL_SOURCES)
	$(BIN)/python -m fusionnas.kernels.build || true
	mkdir -p $(@D) && touch $@

kernels: $(KERNELS)

# A search of 45-130 architectures (as many as the machine trains in its window) on the bundled
# digits by $(WORKERS) worker processes, then its Pareto frontier, each point measured whole as
# deployed on this CPU (onnxruntime) beside the all-conv baseline. A second run resumes the same
# study (studies/quickstart.db).
quickstart: $(STAMP) $(KERNELS)
	$(BIN)/fusionnas search studies/quickstart.toml --workers $(WORKERS)
	$(BIN)/fusionnas pareto studies/quickstart.toml --measure

# One test process per core (pytest-xdist), a test file's tests in one process so that its
# module fixtures (a three-worker study, a PostgreSQL cluster) are built once.
test: $(STAMP) $(KERNELS)
	$(BIN)/python -m pytest -q -n auto --dist loadfile

# The `bench` extra: FFHT builds from source against the venv's numpy and pybind11 (its setup.py
# imports them undeclared, see pyproject.toml), so it is built first without build isolation;
# '.[bench]' then finds it installed. If FFHT does not build, benchmarks.fwht runs without it.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP) $(KERNELS)
	$(BIN)/pip install --quiet numpy pybind11 'setuptools>=77'
	($(BIN)/pip install --quiet --no-build-isolation ffht-unofficial && $(BIN)/pip install --quiet -e '.[bench]') \
		|| echo "FFHT did not build: benchmarks.fwht runs without it"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.operators
	$(BIN)/python -m benchmarks.fwht
	$(BIN)/python -m benchmarks.latency_model
	$(BIN)/python -m benchmarks.end_to_end
	$(BIN)/python -m benchmarks.train_step

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache fusionnas/kernels/lib
