# `make demo` and `make test` work on a fresh clone: they create .venv when missing and install dl into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch's CPU/CUDA wheels as pinned in this project's tested range; pip picks them from its index or cache.
TORCH := torch>=2.4 torchvision>=0.19

.PHONY: demo test test-avx2 lint install clean

$(BIN)/dl: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(BIN)/dl

install: $(BIN)/dl

demo: install
	$(BIN)/dl train configs/resnet.yaml --overwrite --quiet

test: install
	$(BIN)/python -m pytest

# ruff: the lint rules and the layout of pyproject.toml's [tool.ruff]; `ruff format .` fixes the layout.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The numerics-sensitive tests again with the kernels an AVX2-only CPU gets (no AVX-512, no AMX):
# PyTorch's and oneDNN's dispatch then picks other code paths, which round differently.
test-avx2: install
	ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 $(BIN)/python -m pytest -m "numerics and not slow"

clean:
	rm -rf $(VENV) runs
