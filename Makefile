# Polaris Express: `make up` runs the platform locally, `make test` runs the suite.
# Needs only python3 (3.11+) and make: uv is installed into .venv when missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(shell command -v uv 2>/dev/null || echo $(BIN)/uv)
LOCK   := requirements.lock

.PHONY: install up test lint lock bench clean help

help:
	@echo "make up      run the whole platform locally (embedded Postgres, simulated chargers)"
	@echo "make test    run the full test suite"
	@echo "make lint    ruff"
	@echo "make lock    re-resolve $(LOCK) and deploy/requirements.lock from pyproject.toml"
	@echo "make bench   run the benchmarks in bench/"

install: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml $(LOCK)
	@if [ ! -x "$(UV)" ]; then \
		echo "uv not found: installing it into $(VENV) with pip"; \
		$(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet uv; \
	fi
	@[ -x $(BIN)/python ] || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV) pip install --quiet --python $(BIN)/python --require-hashes -r $(LOCK)
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

lock:
	$(UV) pip compile pyproject.toml --extra test --generate-hashes --universal \
		--python-version 3.11 --no-header --quiet -o $(LOCK)
	@# The container's runtime lock: the same pins without the test extras.
	@pins=$$(mktemp) && grep -E '^[a-z0-9][^ ]*==' $(LOCK) | sed 's/ .*//' > $$pins && \
	{ sed -n '1,6p' deploy/requirements.lock | grep '^#'; \
	  $(UV) pip compile pyproject.toml --generate-hashes --universal --python-version 3.11 \
		--no-header --no-annotate --quiet -c $$pins; } > deploy/requirements.lock.new && \
	mv deploy/requirements.lock.new deploy/requirements.lock && rm -f $$pins

up: install
	$(BIN)/polaris up

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check polaris tests bench

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
