# Conduit: `make serve` runs it, `make test` tests it. Both set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: serve test migrate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

## Run Conduit on ./conduit.db (API on http://127.0.0.1:8080)
serve: $(STAMP)
	$(VENV)/bin/conduit serve

## Run the whole test suite (SQLite; PostgreSQL too when CONDUIT_TEST_POSTGRES_URL is set)
test: $(STAMP)
	$(VENV)/bin/pytest -q -p no:cacheprovider

migrate: $(STAMP)
	$(VENV)/bin/conduit migrate

clean:
	rm -rf $(VENV) build *.egg-info
