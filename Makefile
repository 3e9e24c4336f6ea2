# Two entry points: `make run` (demo on SQLite) and `make test` (lint, types, tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VENDOR := src/meterhub/web/static/vendor
ASSETS := $(VENDOR)/.installed
CHROMIUM := /usr/bin/chromium
MOSQUITTO := /usr/sbin/mosquitto

.PHONY: run test fuzz lint types browser mosquitto wrk bench clean

$(STAMP): pyproject.toml client/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e ./client
	touch $(STAMP)

# The dashboard's charts and the API docs page: npm packages, served from the package.
$(ASSETS): frontend/package.json frontend/package-lock.json
	npm ci --prefix frontend --ignore-scripts --no-audit --no-fund
	mkdir -p $(VENDOR)
	cp frontend/node_modules/uplot/dist/uPlot.iife.min.js \
	   frontend/node_modules/uplot/dist/uPlot.min.css \
	   frontend/node_modules/swagger-ui-dist/swagger-ui-bundle.js \
	   frontend/node_modules/swagger-ui-dist/swagger-ui.css $(VENDOR)/
	cp frontend/node_modules/uplot/LICENSE $(VENDOR)/uPlot.LICENSE
	cp frontend/node_modules/swagger-ui-dist/LICENSE $(VENDOR)/swagger-ui.LICENSE
	touch $(ASSETS)

# Debian's Chromium for the browser tests; they skip without it (outside CI).
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing (apt-get install chromium as root); browser tests will skip"; fi; }

# Debian's Mosquitto for the MQTT tests, which start brokers of their own; they skip
# without it (outside CI).
mosquitto:
	@test -x $(MOSQUITTO) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	  else echo "mosquitto missing (apt-get install mosquitto as root); MQTT tests will skip"; fi; }

# Debian's wrk for bench/counter_read.py, which stops with the reason without it.
wrk:
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	  else echo "wrk missing (apt-get install wrk as root); bench/counter_read.py needs it"; fi; }

run: $(STAMP) $(ASSETS)
	$(BIN)/meterhub demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench client
	$(BIN)/ruff format --check src tests bench client

types: $(STAMP)
	$(BIN)/mypy

test: lint types $(ASSETS) browser mosquitto
	$(BIN)/pytest -n 2

# The API fuzzed from its OpenAPI schema, and compaction's property test, at length (the
# test run tries 5 cases an operation and 8 histories).
fuzz: $(STAMP)
	METERHUB_FUZZ_EXAMPLES=$${METERHUB_FUZZ_EXAMPLES:-200} $(BIN)/pytest -p no:xdist -s -q tests/integration/test_fuzz.py
	METERHUB_PROPERTY_EXAMPLES=$${METERHUB_PROPERTY_EXAMPLES:-100} $(BIN)/pytest -n 2 -q tests/integration/test_compaction.py

bench: $(STAMP) $(ASSETS) wrk
	$(BIN)/python bench/poll_sweep.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache frontend/node_modules $(VENDOR)
