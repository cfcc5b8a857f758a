# LeadRelay. Two commands matter: `make run` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .uv/bin/uv
VENV := .venv
VENDOR := src/leadrelay/console/static/vendor

.PHONY: run test install assets browser lint typecheck pytest bench clean

run: install assets ## Embedded PostgreSQL, migrations, demo data, API + worker + console on :8000
	$(VENV)/bin/leadrelay serve --demo

test: install assets browser ## Lint, types and the whole test suite on real parts
	$(VENV)/bin/ruff check src tests bench migrations
	$(VENV)/bin/ruff format --check src tests bench migrations
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

install: $(VENV)/.installed

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

assets: $(VENDOR)/.installed

$(VENDOR)/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	mkdir -p $(VENDOR)
	cp node_modules/htmx.org/dist/htmx.min.js $(VENDOR)/htmx.min.js
	cp node_modules/chart.js/dist/chart.umd.min.js $(VENDOR)/chart.umd.min.js
	touch $@

browser: ## Debian's chromium for the browser tests (never a downloaded browser)
	@command -v chromium >/dev/null 2>&1 || scripts/install-chromium

lint:
	$(VENV)/bin/ruff check src tests bench migrations

typecheck:
	$(VENV)/bin/mypy

pytest:
	$(VENV)/bin/pytest

bench: install ## Each capability's figure beside the machine's raw limit
	$(VENV)/bin/python -m bench
	$(VENV)/bin/python -m bench.dedup_quality

clean:
	rm -rf $(VENV) .uv node_modules $(VENDOR) .mypy_cache .ruff_cache .pytest_cache
