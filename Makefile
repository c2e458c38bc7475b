# Every target installs what it needs into .venv first (once, and again when
# pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install serve test reliability soak lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(BIN)/hokusai serve

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

# The slow parts `make test` leaves out: 100 concurrent registrations, a longer schema
# fuzz, then every test marked `reliability` (the command line's -m overrides the default
# "not reliability"; exit code 5 means none is marked, which is not a failure).
reliability: install
	HOKUSAI_STRESS_REGISTRATIONS=100 HOKUSAI_SCHEMA_EXAMPLES=100 $(BIN)/pytest -m "" \
		tests/stress tests/integration/test_admin_api_schema.py $(PYTEST_ARGS)
	$(BIN)/pytest -m reliability $(PYTEST_ARGS) || test $$? -eq 5

soak: install
	$(BIN)/python bench/soak.py --minutes $(or $(MINUTES),10)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: install
	$(BIN)/python bench/bench_gateway.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
