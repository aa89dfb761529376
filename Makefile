# Everything a fresh machine needs goes through these targets.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint bench clean browser

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch==2.13.0 first: a CPU wheel lies on this machine's disk; a bare "torch"
# requirement would otherwise pull a multi-GB CUDA build.
$(STAMP): $(PY) pyproject.toml
	$(PIP) install --quiet "torch==2.13.0" || $(PIP) install --quiet "torch>=2.3"
	$(PIP) install --quiet -e .
	touch $@

$(DEV_STAMP): $(STAMP)
	$(PIP) install --quiet -e ".[dev]"
	touch $@

# the demo also runs the lecture's Keras MLP (keras-lecture) on Keras' torch backend
KERAS_STAMP := $(VENV)/.installed-keras
$(KERAS_STAMP): $(STAMP)
	$(PIP) install --quiet -e ".[keras]"
	touch $@

demo: $(KERAS_STAMP)
	KERAS_BACKEND=torch $(VENV)/bin/graddoctor demo

# The report's browser test needs Debian's chromium; install it where we can (root on a
# Debian-like system), otherwise that one test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "could not install chromium: the browser test will skip"; \
	  else echo "chromium missing and not installable here: the browser test will skip"; fi; }

test: $(DEV_STAMP) browser
	KERAS_BACKEND=torch $(PY) -m pytest -q

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) runs graddoctor-report .pytest_cache
