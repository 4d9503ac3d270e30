# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean sandbox

# The tests mostly wait on servers and subprocesses, so they run in 3 pytest-xdist workers
# (2 cores here), a file per worker at a time: a module's server fixture starts once.
# `make test PYTEST_WORKERS= PYTEST_ARGS=tests/x.py` runs without them.
PYTEST_WORKERS ?= -n 3 --dist loadfile

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Steps run in a bubblewrap sandbox (README, "Isolation"): install it where it is missing
# and apt-get can (as root), else say how.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; \
		else \
			echo "bubblewrap is missing: install it (apt-get install bubblewrap), or run with OTTO_SANDBOX=none"; \
		fi; }

run: $(STAMP) sandbox
	$(BIN)/otto server

test: $(STAMP) sandbox
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	for b in bench/*.py; do [ $$b = bench/chaos.py ] || $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .otto .pytest_cache
