# pushgate developer tasks. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv postgres run test test-fast demo lint clean

help:
	@echo "make venv       - create $(VENV) and install pushgate with test and bench extras"
	@echo "make run        - start the gateway (pushgate serve)"
	@echo "make test       - run the test suite (installs PostgreSQL via apt if missing)"
	@echo "make test-fast  - run the unit tier only (tests/unit: no servers, no database; < 30 s)"
	@echo "make demo       - run scripts/demo.sh"
	@echo "make lint       - ruff check, ruff format --check, mypy (package and tests)"
	@echo "make clean      - remove $(VENV) and caches"

venv: $(STAMP)

# Re-install only when pyproject.toml changes (or the venv is missing/broken).
$(STAMP): pyproject.toml
	@if [ ! -x $(BIN)/pip ]; then \
		echo ">> creating $(VENV) with $(PYTHON)"; \
		rm -rf $(VENV); \
		$(PYTHON) -m venv $(VENV) || { echo "error: '$(PYTHON) -m venv' failed (on Debian: apt-get install python3-venv)" >&2; exit 1; }; \
	fi
	@echo ">> installing pushgate[test,bench] into $(VENV)"
	$(BIN)/pip install -q -e '.[test,bench]'
	@touch $@

postgres:
	@bash scripts/ensure-postgres.sh

run: venv
	$(BIN)/pushgate serve

test: venv postgres
	@echo ">> running tests"
	$(BIN)/pytest -q $(PYTEST_ARGS)

# The unit tier: no lab, no database, no subprocess (tests/conftest.py refuses those fixtures there).
test-fast: venv
	@echo ">> running the unit tier"
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

demo: venv
	bash scripts/demo.sh

# The gates CI runs after the suite (.ci/run): lint, format, types of the package and the tests.
lint: venv
	$(BIN)/ruff check pushgate tests
	$(BIN)/ruff format --check pushgate tests
	$(BIN)/mypy
	$(BIN)/mypy tests

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
