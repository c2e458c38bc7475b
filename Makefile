# Every target installs what it needs into .venv first (once, and again when
# pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# The browser tests drive Debian's chromium (scripts/setup-test-deps.sh): Playwright must never
# fetch a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: install test-deps serve test test-fast reliability faults soak lint format bench topology clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[server,sklearn,dev]'
	touch $(STAMP)

install: $(STAMP)

# What the tests need beyond Python (nginx for tests/topology/, chromium for tests/browser/,
# the OpenID provider of tests/oidc/); quick when present.
test-deps:
	sh scripts/setup-test-deps.sh

# make serve [PORT=8080] [MLFLOW_PORT=5001] [HOST=127.0.0.1]; unset ones fall back to
# HOKUSAI_PORT, HOKUSAI_MLFLOW_PORT, HOKUSAI_HOST, then the defaults.
serve: install
	$(BIN)/hokusai serve $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT)) \
		$(if $(MLFLOW_PORT),--mlflow-port $(MLFLOW_PORT))

# Two workers: the suite mostly waits on servers it starts. Each test module stays on one
# worker (--dist loadscope), so a module's servers start once.
TEST_WORKERS ?= 2
test: install test-deps
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

# The tests that start no server (the gateway's parts, keys, the admin services and the
# stores, on SQLite; on PostgreSQL too when HOKUSAI_TEST_POSTGRES_URL is set), for the
# edit-and-check loop: under a minute. Those of these folders that talk to MLflow are
# marked `integration` and left out. `make test` runs them all as well.
FAST_TESTS := tests/unit tests/property tests/admin tests/store
test-fast: install
	$(BIN)/pytest -q -m "not integration and not reliability" $(FAST_TESTS) $(PYTEST_ARGS)

# The slow parts `make test` leaves out: 100 concurrent registrations, a longer schema
# fuzz, then every test marked `reliability` (the command line's -m overrides the default
# "not reliability"; exit code 5 means none is marked, which is not a failure).
reliability: install
	HOKUSAI_STRESS_REGISTRATIONS=100 HOKUSAI_SCHEMA_EXAMPLES=100 $(BIN)/pytest -m "" \
		tests/stress tests/integration/test_admin_api_schema.py $(PYTEST_ARGS)
	$(BIN)/pytest -m reliability $(PYTEST_ARGS) || test $$? -eq 5

# The slow fault tests CI runs after `make test`: MLflow killed under load, and the whole
# TLS topology (clients, doctor, replica and dispatcher killed behind nginx, 256 MiB).
faults: install test-deps
	$(BIN)/pytest -m reliability tests/faults tests/topology $(PYTEST_ARGS)

soak: install
	$(BIN)/python bench/soak.py --minutes $(or $(MINUTES),10)

# mypy checks what pyproject.toml names: src/hokusai strictly, tests/ with a relaxed override.
lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

# The production topology on loopback (nginx + TLS, two replicas, PostgreSQL, S3) to try.
topology: install test-deps
	PYTHONPATH=deploy $(BIN)/python -m stack

# Every benchmark, each writing its record under bench/results/ (about an hour: the
# soak alone is MINUTES=10 of it; the wrk one only where wrk is installed; the package
# sizes are printed). QUICK=1: a look in about two minutes, short runs
# of the gateway (all four reads, no artifacts), of one rate-limit decision and of a small
# fleet pull, nothing recorded.
bench: install
ifeq ($(QUICK),1)
	$(BIN)/python bench/bench_gateway.py --artifact-mib 0 --rounds 1 --duration 2 \
		--latency-seconds 2 --warmup-seconds 0.5 --warmup-requests 50 --no-write
	$(BIN)/python bench/bench_ratelimit.py
	$(BIN)/python bench/bench_fleet.py --mib 32 --clients 8 --rounds 1 --no-write
else
	$(BIN)/python bench/bench_gateway.py
	$(BIN)/python bench/bench_sdk.py
	$(BIN)/python bench/bench_webhooks.py
	$(BIN)/python bench/bench_ratelimit.py
	$(BIN)/python bench/bench_fleet.py
	$(BIN)/python bench/bench_integrity.py
	if command -v wrk >/dev/null; then $(BIN)/python bench/bench_cached_reads.py; \
	else echo "wrk is not installed (apt-get install wrk): bench_cached_reads.py skipped"; fi
	$(BIN)/python bench/package_size.py
	$(BIN)/python bench/soak.py --minutes $(or $(MINUTES),10)
endif

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
