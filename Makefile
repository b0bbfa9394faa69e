PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-fast test-avx2 gpu-check demo bench venv clean

# Another CPU's arithmetic: torch's kernels, oneDNN and MKL held to AVX2 (no AVX-512, no AMX),
# as on an older or a different x86-64 processor.
AVX2 := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests
	$(MAKE) --no-print-directory test-avx2

test-avx2: $(STAMP)  # the model and codec tests again under AVX2 arithmetic, and every conformance stream
	$(AVX2) $(PY) -m pytest -q -p no:cacheprovider tests/layers tests/models tests/file_codec \
		-m "not slow or conformance"

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
