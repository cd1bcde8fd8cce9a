# Conveyor's commands. `make demo` and `make test` need nothing but Python 3.11 on the machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install install-size demo dev lint typecheck test test-unit test-integration test-reliability bench clean

# What `make install` puts in the virtualenv: everything, for running the demo and the tests.
# A production process installs less: see the README's Production section.
EXTRAS ?= local,dev
# uv (from PyPI, installed into the virtualenv first) when it can; pip otherwise or with INSTALLER=pip.
# uv compiles the bytecode at install, as pip does: every process the tests start then reads it
# instead of compiling the libraries again (where PYTHONDONTWRITEBYTECODE is set, that would be
# at each start).
INSTALLER ?= uv

$(INSTALLED): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@if [ "$(INSTALLER)" = uv ] && $(PY) -m pip install --quiet uv \
	    && $(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e '.[$(EXTRAS)]'; then \
	  echo "installed .[$(EXTRAS)] with uv"; \
	else \
	  echo "installing .[$(EXTRAS)] with pip"; \
	  $(PY) -m pip install --quiet --upgrade pip && $(PY) -m pip install --quiet -e '.[$(EXTRAS)]'; \
	fi
	touch $(INSTALLED)

install: $(INSTALLED)

demo: $(INSTALLED)
	$(VENV)/bin/conveyor demo

dev: $(INSTALLED)
	$(VENV)/bin/conveyor dev

lint: $(INSTALLED)
	$(VENV)/bin/ruff check actors pipelines web conveyor tests bench scripts examples

typecheck: $(INSTALLED)
	$(VENV)/bin/mypy

# Two processes (pytest-xdist); the tests that share a Redis database carry one xdist_group and run
# in one of them. PYTEST_WORKERS=0 runs everything in this process.
PYTEST_WORKERS ?= 2
test-unit: $(INSTALLED)
	$(PY) -m pytest tests --ignore=tests/integration --ignore=tests/reliability -q -n $(PYTEST_WORKERS) --dist loadgroup

# Real Redis and PostgreSQL, real worker processes. Each folder sets up its own services and broker
# for its own tests, so `pytest tests` runs the whole suite in one process too; CI runs them apart
# to show which stage failed.
test-integration: $(INSTALLED)
	$(PY) -m pytest tests/integration -q

# Faults injected into real workers, Redis and PostgreSQL.
test-reliability: $(INSTALLED)
	$(PY) -m pytest tests/reliability -q

# The base install (no extras) in a fresh virtualenv: its site-packages gzipped must stay under 300 MB.
install-size: $(INSTALLED)
	$(PY) scripts/install_size.py --max-gzip-mb 300

test: lint typecheck test-unit test-integration test-reliability install-size

bench: $(INSTALLED)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
