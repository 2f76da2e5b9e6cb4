# `make demo` and `make test` work on a fresh clone: they create .venv when missing and install dl into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch's CPU/CUDA wheels as pinned in this project's tested range; pip picks them from its index or cache.
TORCH := torch>=2.4 torchvision>=0.19

.PHONY: demo test install clean

$(BIN)/dl: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(BIN)/dl

install: $(BIN)/dl

demo: install
	$(BIN)/dl train configs/resnet.yaml --overwrite

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs
