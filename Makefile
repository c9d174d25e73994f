# The two commands of the README: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Which lock the venv installs: dev (runtime + test, bench, spark) or runtime (what production runs).
LOCK ?= dev
PIP := $(BIN)/pip install -q --disable-pip-version-check
# `make lock` resolves with uv, kept in a tool venv of its own (never in the runtime venv).
UV_VERSION := 0.13.9
TOOLS := .local/tools
UV := $(TOOLS)/bin/uv
LOCK_FOR := --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --generate-hashes --quiet

.PHONY: venv lock services services-down status migrate browser test run demo demo-down bench-ingest bench-train bench-quality bench-product bench-serve clean

venv: $(VENV)/.installed

# Exact versions and hashes from requirements/$(LOCK).txt; the project itself without
# dependencies; `pip check` fails when pyproject.toml gained a dependency the lock lacks.
$(VENV)/.installed: requirements/$(LOCK).txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements/$(LOCK).txt
	$(PIP) --no-deps -e .
	@$(BIN)/pip check >/dev/null || { $(BIN)/pip check; echo "requirements/$(LOCK).txt is stale: run make lock" >&2; exit 1; }
	@touch $@

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

# Re-resolve both locks from pyproject.toml after changing a dependency (pins already
# in the files are kept when still allowed); `make lock UPGRADE=1` moves to the newest allowed.
# The dev lock is constrained by the runtime lock, so both install the same runtime versions.
lock: $(UV)
	$(UV) pip compile pyproject.toml $(LOCK_FOR) $(if $(UPGRADE),--upgrade) -o requirements/runtime.txt
	$(UV) pip compile pyproject.toml --extra test --extra bench --extra spark -c requirements/runtime.txt \
		$(LOCK_FOR) $(if $(UPGRADE),--upgrade) -o requirements/dev.txt

services: venv
	$(BIN)/cinerec services up

services-down: venv
	$(BIN)/cinerec services down

status: venv
	$(BIN)/cinerec services status

migrate: services
	$(BIN)/cinerec db migrate

browser: venv
	$(BIN)/python -m app.localstack.browser

test: migrate browser
	$(BIN)/pytest -q -p no:cacheprovider --durations=15 $(PYTEST_ARGS)

run: migrate
	$(BIN)/honcho start

demo: migrate
	$(BIN)/cinerec demo $(DEMO_ARGS)

demo-down: venv
	$(BIN)/cinerec demo --stop
	$(BIN)/cinerec services down

# e.g. make bench-ingest BENCH_ARGS="--events 200000 --with-stats --workers 2"
bench-ingest: services
	$(BIN)/python bench/ingest.py $(BENCH_ARGS)

bench-serve: services
	@command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python bench/serve.py $(BENCH_ARGS)

# offline quality of every first-level model (MovieLens + simulator, two protocols, self-tuned);
# BENCH_ARGS="--no-grid --no-sim" for a quick MovieLens-only run
bench-quality: venv
	$(BIN)/python bench/quality.py $(BENCH_ARGS)

# the retrain pipeline vs a bare ALS fit (ClickHouse + Redis); e.g.
# make bench-train BENCH_ARGS="--users 20000 --films 5000 --events 1000000 --reuse"
bench-train: services
	$(BIN)/python bench/train.py $(BENCH_ARGS)

# MovieLens through the whole product (Kafka import, worker, cinerec train, the API) vs offline baselines
bench-product: services
	$(BIN)/python bench/product_path.py $(BENCH_ARGS)

clean: services-down
	rm -rf .local
