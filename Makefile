# `make test` on a fresh machine: creates .venv, installs torch (CPU build) first,
# then the package with its dev extra, then runs the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo app lint install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[dev,bench,app]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

# A small MAXIM learns to denoise scikit-image's photos on the CPU in a few minutes,
# then prints its validation PSNR next to the noisy input's.
demo: $(STAMP)
	$(PY) train.py task=denoise data=demo degradation.sigma=25 model=maxim_1s model.features=8 \
		trainer=cpu trainer.max_steps=200 trainer.val_check_interval=100 trainer.log_every_n_steps=10 \
		data.patch_size=64 data.batch_size=4 module.lr=1e-3 logger=csv

# The local page: restore a photo with the shipped denoiser (or ckpt=/weights= via ARGS) and
# look at it before/after; serves http://127.0.0.1:7860 until Ctrl-C.
app: $(STAMP)
	$(PY) -m restore.app $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check restore tests benchmarks train.py evaluate.py

clean:
	rm -rf $(VENV) .pytest_cache
