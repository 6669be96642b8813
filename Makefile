# pushgate developer tasks. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv postgres redis node run test test-fast demo lint mutation mutation-score clean

help:
	@echo "make venv       - create $(VENV) and install pushgate with test and bench extras"
	@echo "make run        - start the gateway (pushgate serve)"
	@echo "make test       - run the test suite (installs PostgreSQL, Redis and Node.js via apt if missing)"
	@echo "make test-fast  - run the unit tier only (tests/unit: no servers, no database; < 30 s)"
	@echo "make demo       - run scripts/demo.sh"
	@echo "make lint       - ruff check, ruff format --check, mypy (package and tests)"
	@echo "make mutation   - mutation testing of domain/, engine/ and the lab's checks (slow; docs/testing.md)"
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

redis:
	@bash scripts/ensure-redis.sh

node:
	@bash scripts/ensure-node.sh

run: venv
	$(BIN)/pushgate serve

# Both cores: each xdist worker starts its own PostgreSQL, Redis and lab; the tests that load the
# machine on their own share one worker (tests/conftest.py, SERIAL_MODULES). PYTEST_WORKERS=0: serial.
PYTEST_WORKERS ?= 2

test: venv postgres redis node
	@echo ">> running tests"
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

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

# Mutation testing (docs/testing.md): mutmut mutates pushgate/domain, pushgate/engine and the lab's
# credential checks ([tool.mutmut] in pyproject.toml) and runs, for each mutant, only the tests
# that executed its function. Niced and bounded: it shares the machine. Survivors are listed
# with `$(BIN)/mutmut results`, one shown with `$(BIN)/mutmut show NAME`.
MUTATION_CHILDREN ?= 2
MUTATION_TIMEOUT  ?= 3h
mutation: venv
	rm -rf mutants
	PUSHGATE_TEST_LAB_IN_PROCESS=1 nice -n 19 timeout $(MUTATION_TIMEOUT) $(BIN)/mutmut run --max-children $(MUTATION_CHILDREN) || true
	@$(MAKE) --no-print-directory mutation-score

# The score per package from the last run's results (killed or timed out / mutants with tests);
# fails when the overall score is under MUTATION_MIN (issue 8's target).
MUTATION_MIN ?= 90
mutation-score:
	@$(BIN)/mutmut results --all true | awk -F': ' -v min=$(MUTATION_MIN) ' \
		{ split($$1, a, "."); gsub(/ /, "", a[1]); pkg = a[1] "." a[2]; st = $$2; seen[pkg]++; \
		  if (st == "not checked") { unrun[pkg]++; next } \
		  if (st == "no tests" || st == "skipped") { untested[pkg]++; next } \
		  total[pkg]++; all++; if (st == "killed" || st == "timeout") { killed[pkg]++; k++ } } \
		END { for (p in seen) printf "%-18s %5d/%-5d killed %5.1f%%  (%d without tests, %d not run yet)\n", \
		        p, killed[p], total[p], total[p] ? 100 * killed[p] / total[p] : 0, untested[p], unrun[p]; \
		      if (all) printf "%-18s %5d/%-5d killed %5.1f%%\n", "overall", k, all, 100 * k / all; \
		      if (!all || 100 * k / all < min) { printf "below the target of %d%%\n", min; exit 1 } }'

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache mutants
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
