# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-fast lint venv clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch first: these exact pins come from this machine's disk, any other request downloads gigabytes.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/simplebits demo

# The suite without the long tests (marked slow): under 10 minutes on 2 cores. CI runs it, then test-slow.
# --durations: every CI log lists the slowest tests.
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" --durations=15

# The long tests (a command run end to end, torchrun, the browser, a kill and resume): CI runs them after `make test`.
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow --durations=15

# The unit tests without the integration and slow ones: a few minutes on 2 cores.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not integration and not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) *.egg-info
