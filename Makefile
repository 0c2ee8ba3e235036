# The two commands: `make run` (set up and start on embedded defaults) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# One stamp per level: `make run` installs the runtime dependencies only; `make test` adds the
# `test` extras on top (after `make run` it installs just those).
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: run test setup setup-test system-deps lint bench bench-deps clean readme

$(RUN_STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e .
	touch $@

$(TEST_STAMP): $(RUN_STAMP)
	$(PIP) -e '.[test]'
	$(PIP) --no-deps 'gdal-utils>=3.6'  # GDAL's validate_gpkg.py, pure Python; its GDAL bindings are not needed
	touch $@

setup: $(RUN_STAMP)

setup-test: $(TEST_STAMP)

run: setup
	$(BIN)/exporter db upgrade
	$(BIN)/exporter demo
	$(BIN)/exporter up

# Test-only system packages: nginx (real ETag/Last-Modified), Chromium (browser tests), unzip,
# gdal-bin (gdalinfo opens the tiles exports' GeoPackages; gdal_translate in bench_tiles).
SYSTEM_PACKAGES := nginx-light chromium unzip curl gdal-bin
system-deps:
	@missing=""; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v unzip >/dev/null || missing="$$missing unzip"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v gdalinfo >/dev/null || missing="$$missing gdal-bin"; \
	if [ -n "$$missing" ]; then \
	  echo "installing test system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# Two test processes (the machine's two cores), each test module whole in one of them: a module's
# Redis database and servers are its own (tests/test_layers.py checks the databases are unique).
TEST_WORKERS ?= 2
test: setup-test system-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: setup-test
	$(BIN)/ruff check exporter workers web cli tests bench celeryconfig.py

bench: setup-test bench-deps
	$(BIN)/python bench/bench_export.py
	$(BIN)/python bench/bench_archive.py
	$(BIN)/python bench/bench_tiles.py
	$(BIN)/python bench/bench_search.py
	$(BIN)/python bench/bench_collections.py
	PATH="$(CURDIR)/.venv-aws/bin:$$PATH" $(BIN)/python bench/bench_sync.py

# The baselines of bench_sync.py: awscli (it pins botocore, so a venv of its own) and rclone.
bench-deps:
	test -x .venv-aws/bin/aws || ($(PYTHON) -m venv .venv-aws && .venv-aws/bin/python -m pip install --quiet --disable-pip-version-check awscli)
	command -v rclone >/dev/null || (SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq rclone)

clean:
	rm -rf var .pytest_cache .hypothesis

# Regenerate the README's settings table from exporter/config.py.
readme: setup
	$(BIN)/python -c "import re, pathlib; from exporter.config import settings_markdown as m; p = pathlib.Path('README.md'); t = p.read_text(); p.write_text(re.sub(r'(<!-- settings:start.*?-->\n).*?(\n<!-- settings:end -->)', lambda g: g.group(1) + m() + g.group(2), t, flags=re.S))"
