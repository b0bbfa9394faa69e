PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-fast gpu-check demo bench venv clean

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

gpu-check: $(STAMP)  # on a machine with CUDA: the CUDA tests, then a quick CUDA benchmark
	$(PY) -m pytest -q -m cuda -rs tests
	$(PY) bench.py --cuda --quick --model s

demo: $(STAMP)
	$(PY) demo.py

bench: $(STAMP)
	$(PY) bench.py

clean:
	rm -rf $(VENV) demo_out
