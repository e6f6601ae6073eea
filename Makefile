# tensortape: every target creates or reuses the local virtualenv in .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-cuda lint demo bench gpu-check clean

venv: $(STAMP)

# Reinstall only when the project's metadata changes: quiet and fast when nothing did.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	@$(PY) -m pip install -q -e ".[dev,oracle]"
	@touch $(STAMP)

test: $(STAMP)
	@$(PY) -m pytest tests

# The whole suite on the cuda device only (needs CuPy and a GPU).
test-cuda: $(STAMP)
	@TENSORTAPE_TEST_DEVICES=cuda $(PY) -m pytest tests

lint: $(STAMP)
	@$(PY) -m ruff check engine kernels layers optimizers regularizers generative tensortape tests benchmarks examples reports

demo: $(STAMP)
	@$(VENV)/bin/tensortape train classifier --model cnn --dataset digits --device cpu --out runs/demo

bench: $(STAMP)
	@$(PY) -m benchmarks.run

# On a CUDA machine: the suite on cuda plus the benchmarks on cuda vs PyTorch CUDA.
gpu-check: $(STAMP)
	@$(PY) -c "import cupy" 2>/dev/null || $(PY) -m pip install -q "cupy-cuda12x>=13" \
		|| $(PY) -m pip install -q "cupy-cuda13x>=13"
	@TENSORTAPE_TEST_DEVICES=cuda $(PY) -m pytest tests -x -q
	@$(PY) -m benchmarks.run --device cuda

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
