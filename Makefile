# The two commands of the README:  make demo  ·  make test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test install install-test bench clean

# The router's request path is compiled with mypyc (setup.py): an edit to one of
# its sources must rebuild it, or the editable install keeps running the old code.
ROUTER_SOURCES := $(wildcard src/conveyor/router/*.py)

$(VENV)/bin/python:
	$(PY) -c 'import sys; assert sys.version_info >= (3, 11), "Conveyor needs Python 3.11 or newer"'
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml setup.py $(ROUTER_SOURCES) | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml setup.py $(ROUTER_SOURCES) | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## make demo: the platform on this machine with the sample app deployed, switched, canaried and rolled back.
demo: install
	$(BIN)/python examples/demo.py

## make test: the whole suite (unit, integration with real processes, e2e in Chromium).
## pytest's exit code 5 ("no tests collected") is a failure here, not a pass.
test: install-test
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests: failing"; exit 1; fi; exit $$rc

## make bench: the benchmarks (JSON on stdout); not part of the tests.
bench: install-test
	$(BIN)/python benchmarks/router.py
	$(BIN)/python benchmarks/builds.py
	$(BIN)/python benchmarks/detection.py
	$(BIN)/python benchmarks/rollback.py

clean:
	rm -rf $(VENV) .demo artifacts .pytest_cache
