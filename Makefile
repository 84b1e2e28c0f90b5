# Every target sets up what it needs: a virtualenv in .venv with the project and its dev tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# Three workers on two cores: many tests spend much of their time waiting for a command, a
# server or PostgreSQL.
PYTEST_WORKERS ?= 3

.PHONY: install demo dev test e2e lint format bench clean chromium

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(INSTALLED)

install: $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/bioloupe-data demo

dev: $(INSTALLED)
	$(BIN)/bioloupe-data dev

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) -m "not e2e" --durations=15

# The UI checks drive Debian's Chromium (no browser download): installed here when missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "make e2e needs Chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

# The daemon and webserver end to end, and the UI in a real browser: one module-scoped stack.
e2e: $(INSTALLED) chromium
	$(BIN)/pytest -p no:xdist -m e2e --durations=5

bench: $(INSTALLED)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .bioloupe .pytest_cache .ruff_cache
