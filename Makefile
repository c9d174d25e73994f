# The two commands of the README: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= test,bench,spark

.PHONY: venv services services-down status migrate browser test run demo demo-down bench-ingest bench-train bench-quality bench-serve clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[$(EXTRAS)]'
	@touch $@

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
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

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

# offline model quality on MovieLens; BENCH_ARGS=--tune reruns the ALS grid
bench-quality: venv
	$(BIN)/python bench/quality.py $(BENCH_ARGS)

clean: services-down
	rm -rf .local
