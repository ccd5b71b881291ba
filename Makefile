# Two commands do all set-up on a fresh machine (Debian, Python 3.11): `make demo` and `make test`.
# Both create .venv and install everything from pyproject.toml themselves; nothing downloads at run time.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps demo demo-postgres test lint unit integration dbt-build bench bench-latency soak down clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The whole pipeline on embedded parts: broker, generator, ingester, lake, dbt build, printed marts.
demo: install
	$(BIN)/ingest demo

## The same pipeline fed by a real source: PostgreSQL + the Debezium connector on Kafka Connect (OpenJDK 17).
demo-postgres: install system-deps
	$(BIN)/ingest demo-postgres

## OpenJDK 17 and PostgreSQL 15 from apt, only if missing and only as root (CI); else a hint.
system-deps:
	bash .ci/system-deps

## Every check: ruff, sqlfluff (dbt templater), pytest (unit + integration with the real broker, lake, dbt).
test: install system-deps lint
	$(BIN)/pytest -q -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check ingest pytests bench
	$(BIN)/ruff format --check ingest pytests bench
	# The layers of ingest/ (docs/architecture.md): core imports nothing above it, production no dev tools.
	$(BIN)/lint-imports
	$(BIN)/mypy
	# Against an empty throwaway lake, so the result does not depend on what the dev lake holds.
	INGEST_LAKE__CATALOG_DATABASE=sqlfluff INGEST_LAKE__DATA_PATH=.lake/sqlfluff-data \
		$(BIN)/sqlfluff lint models macros tests

unit: install
	$(BIN)/pytest -q -m "not integration"

## Long reliability runs (50 kills under the generator, 10 minutes of concurrency): docs/reliability.md.
soak: install
	$(BIN)/pytest -q -s -m soak -p no:cacheprovider -o addopts=""

## Benchmarks (bench/): results in bench/results/*.json and docs/benchmarks.md. BENCH_SCALE=quick for a short run.
BENCH_SCALE ?= full
bench: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/run_all.py --scale $(BENCH_SCALE)

## Produce-to-serving latency of continuous mode (ingest run --dbt-build-every), a few minutes.
bench-latency: install
	$(BIN)/python bench/serving_latency.py

down: install
	$(BIN)/ingest down

clean: down
	rm -rf .lake target logs
