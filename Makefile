PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-fast demo bench venv clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

test-fast: $(STAMP)  # the edit-test loop: everything but the tests marked slow
	$(PY) -m pytest -q -m "not slow" tests

demo: $(STAMP)
	$(PY) demo.py

bench: $(STAMP)
	$(PY) bench.py

clean:
	rm -rf $(VENV) demo_out
