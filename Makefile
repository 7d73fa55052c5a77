# Two commands on a fresh machine: `make demo` and `make test` (both create .venv when missing).
# `make test` ends with `make docs`: the documentation site built with `mkdocs build --strict`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BACKENDS := tensorflow jax torch
DEMO_EPOCHS ?=

.PHONY: setup demo test docs bench quality clean-venv

setup: $(VENV)/.installed

# torch first: `pip install torch==2.13.0` takes the local CPU build where one is provided.
# tensorflow-serving-api (the PredictionLog protos of `kgen export --warmup`) requires the `tensorflow`
# package, which would install a second TensorFlow over tensorflow-cpu; its other requirements
# (grpcio, protobuf) come with TensorFlow, so it goes in without dependencies.
$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps "tensorflow-serving-api==2.21.*"
	touch $@

demo: setup
	$(VENV)/bin/kgen train vae --dataset mnist $(if $(DEMO_EPOCHS),--epochs $(DEMO_EPOCHS))

# The whole suite once per Keras backend; stops at the first backend that fails.
# JAX keeps its compiled steps in a persistent cache (every size, every compile time): the suite's
# processes train the same small models many times, and a rerun skips most of XLA's compilation.
JAX_CACHE := JAX_COMPILATION_CACHE_DIR=$(CURDIR)/$(VENV)/jax-cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 \
	JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0
# Two test processes (pytest-xdist; a file's tests stay in one process, so its module fixtures are built
# once) with one thread each: the tests' small networks are bound by Python, not by arithmetic, and two
# processes of two threads each on two cores would only take turns. Tests marked one_backend (behaviour
# that does not depend on the backend) run in one of the three passes (tests/conftest.py).
TEST_WORKERS ?= 2
test: setup
	@set -e; for backend in $(BACKENDS); do \
		echo "=== pytest on KERAS_BACKEND=$$backend"; \
		KERAS_BACKEND=$$backend OMP_NUM_THREADS=1 $(JAX_CACHE) \
			$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS); \
	done
	@$(MAKE) --no-print-directory docs

# The documentation site (mkdocs.yml, docs/) into site/ (git-ignored). --strict: a warning (a broken link or
# anchor, a page left out of the nav) fails it; docs/hooks/models.py writes the models page from the catalog.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# Every suite (benchmarks/bench.py): kgen against the same networks' hand-written Keras train_step on each
# backend, interleaved rounds (median of the per-round ratios); writes benchmarks/results/bench.json and
# bench.md (bench.json is kept in git: the tables are generated from it). BENCH_ARGS selects (e.g. BENCH_ARGS="--suites vae --backends jax --steps 8 --rounds 1"
# for a quick run; docs/speed.md shows the command behind its tables); BENCH_DOCS=1 also rewrites the
# generated tables of docs/speed.md from that JSON (benchmarks/report.py --docs).
bench: setup
	$(PY) benchmarks/bench.py --out benchmarks/results $(BENCH_ARGS)
	$(if $(BENCH_DOCS),$(PY) benchmarks/report.py benchmarks/results/bench.json --docs docs/speed.md)

# The reproduction table (benchmarks/reproduction.py): every family trained and judged by its field's metric on
# the offline MNIST digits and Fashion-MNIST, beside the literature; hours on 2 cores. Results accumulate in
# benchmarks/results/quality.json (QUALITY_ARGS="--only vae rbm --datasets mnist-4.5k" reruns some cells) and
# the table in docs/reproduction.md is rewritten from it.
# (The VAE-against-pythae comparison is its own script: `python benchmarks/vae_peer.py`, pythae from the
# `quality` extra that this target installs.)
quality: setup
	$(PY) -m pip install -q -e ".[quality]"
	$(PY) benchmarks/quality.py --all --docs docs/reproduction.md $(QUALITY_ARGS)

clean-venv:
	rm -rf $(VENV)
