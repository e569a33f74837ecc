# Conduit: `make serve` runs it, `make test` tests it. Both set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: serve test lint migrate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

## Run Conduit on ./conduit.db (API on http://127.0.0.1:8080)
serve: $(STAMP)
	$(VENV)/bin/conduit serve

## Run the whole test suite (SQLite; PostgreSQL too when CONDUIT_TEST_POSTGRES_URL is set), in
## TEST_PROCESSES processes: most tests wait on real servers and processes rather than compute, so
## more processes than cores still helps (0: all in this process, for a debugger). The tests
## marked `alone` measure latency bounds and run afterwards, one at a time.
TEST_PROCESSES ?= 3
test: $(STAMP)
	$(VENV)/bin/pytest -q -rs -p no:cacheprovider -n $(TEST_PROCESSES) -m "not alone" --durations=30
	$(VENV)/bin/pytest -q -rs -p no:cacheprovider -m alone --durations=10

## Static checks: ruff (style, bugs, security), mypy (types of conduit/), lint-imports (the layers)
lint: $(STAMP)
	$(VENV)/bin/ruff check
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

migrate: $(STAMP)
	$(VENV)/bin/conduit migrate

clean:
	rm -rf $(VENV) build *.egg-info

## Load benchmark (docs/performance.md): Conduit against Postfix's smtp-sink, loaded by smtp-source.
## Installs what it needs: Debian's postfix package (only its smtp-source/smtp-sink tools are used;
## no Postfix daemon is started) and matplotlib + py-spy into .venv. Settings: BENCH_* (bench/run.py).
.PHONY: bench
bench: $(STAMP)
	@if ! command -v smtp-source >/dev/null 2>&1 && [ ! -x /usr/sbin/smtp-source ]; then \
	  echo "bench: installing Debian's postfix package for smtp-source and smtp-sink (no daemon is started)"; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "postfix postfix/main_mailer_type select No configuration" | $$sudo debconf-set-selections; \
	  added=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' | $$sudo tee /usr/sbin/policy-rc.d >/dev/null; \
	    $$sudo chmod 755 /usr/sbin/policy-rc.d; added=1; fi; \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postfix; \
	  status=$$?; [ -z "$$added" ] || $$sudo rm -f /usr/sbin/policy-rc.d; \
	  [ $$status = 0 ] || exit $$status; \
	fi
	@$(VENV)/bin/python -c 'import matplotlib' 2>/dev/null || $(VENV)/bin/pip install --quiet matplotlib
	@[ -x $(VENV)/bin/py-spy ] || $(VENV)/bin/pip install --quiet py-spy
	$(VENV)/bin/python bench/run.py

## Soak: 100,000 messages through one `conduit serve`: none lost, memory flat (SOAK_MESSAGES, SOAK_ROUND,
## SOAK_SIZE; BENCH_DATABASE_URL for PostgreSQL). Needs smtp-source: run `make bench` once first, or install postfix.
.PHONY: soak
soak: $(STAMP)
	$(VENV)/bin/python bench/soak.py

## CPU per message of the inbound checks (SPF, DKIM, DMARC) with warm caches (bench/auth_checks.py).
.PHONY: bench-checks
bench-checks: $(STAMP)
	$(VENV)/bin/python bench/auth_checks.py

## Instructions per inbound check with warm caches, counted by callgrind (needs valgrind); BENCH_SOURCE=<dir> for another commit.
.PHONY: bench-checks-instructions
bench-checks-instructions: $(STAMP)
	$(VENV)/bin/python bench/checks_instructions.py

## Instructions per message of each Conduit process under callgrind (needs valgrind); BENCH_SOURCE=<dir> for another commit.
.PHONY: bench-instructions
bench-instructions: $(STAMP)
	$(VENV)/bin/python bench/instructions.py

## Memory of one 25 MiB message per Conduit process (docs/performance.md); BENCH_MEMORY_MIB to change it.
.PHONY: bench-memory
bench-memory: $(STAMP)
	$(VENV)/bin/python bench/memory.py
