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
# PyTorch's and oneDNN's dispatch then picks other code paths, which round differently. On a CPU
# without AVX-512 `make test` has run those kernels already, so the second pass is skipped.
test-avx2: install
	@if grep -q avx512 /proc/cpuinfo 2>/dev/null; then \
		ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 $(BIN)/python -m pytest -m "numerics and not slow"; \
	else echo "test-avx2: this CPU has no AVX-512; make test ran the AVX2 kernels already"; fi

clean:
	rm -rf $(VENV) runs
