# tensortape: every target creates or reuses the local virtualenv in .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-cuda lint demo bench docs-img gpu-check clean

venv: $(STAMP)

# Reinstall only when the project's metadata changes: quiet and fast when nothing did.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	@$(PY) -m pip install -q -e ".[dev,mpi,oracle,logs]"
	@touch $(STAMP)

test: $(STAMP)
	@$(PY) -m pytest tests

# The whole suite on the cuda device only (needs CuPy >= 14 and a GPU; never the stand-in).
test-cuda: $(STAMP)
	@TENSORTAPE_TEST_DEVICES=cuda TENSORTAPE_REQUIRE_GPU=1 $(PY) -m pytest tests

lint: $(STAMP)
	@$(PY) -m ruff check engine kernels layers optimizers regularizers generative tensortape tests benchmarks examples reports

demo: $(STAMP)
	@$(VENV)/bin/tensortape train classifier --model cnn --dataset digits --device cpu --out runs/demo --overwrite

# PRECISION=32,16-mixed,bf16-mixed adds the mixed-precision rows (issue 14; about 3x as long on
# the CPU, torch's float16 autocast there alone minutes: it has no float16 CPU kernels).
PRECISION ?= 32
bench: $(STAMP)
	@$(PY) -m benchmarks.run --precision $(PRECISION)

# The README's pictures and result numbers (docs/img/*.png, *.json, vae_report.md): every report
# trains its models from scratch, ours and the PyTorch prototypes, on the CPU with seed 0
# (about 15 minutes on 2 cores); then a GAN run's TensorBoard picture and the demo's curves.
docs-img: $(STAMP)
	@$(PY) reports/gan_report.py --device cpu --torch --quiet --json docs/img/gan_report.json
	@$(PY) reports/translation_report.py --device cpu --torch --quiet
	@$(PY) reports/stylegan_report.py --device cpu --torch --quiet --json docs/img/stylegan_report.json
	@$(PY) reports/vae_report.py
	@$(PY) reports/tensorboard_figure.py --train-gan
	@$(VENV)/bin/tensortape train classifier --model cnn --device cpu --no-progress --out runs/demo --overwrite
	@cp runs/demo/curves.png docs/img/cnn_curves.png

# On a CUDA machine: CuPy with its CUDA libraries (the cuda12 extra; CUDA=cuda13 for a CUDA 13
# driver), the suite on cuda and the benchmarks vs PyTorch CUDA, written to runs/gpu-check/.
# Fails loudly when CuPy cannot compute on a GPU here.
CUDA ?= cuda12
gpu-check: $(STAMP)
	@$(PY) -m pip install -q -e ".[$(CUDA)]"
	@$(PY) -m benchmarks.gpu_check --out runs/gpu-check

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
