# sglp — `make help` lists the targets. `make demo` and `make test` install what is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export WANDB_MODE ?= offline
export WANDB_SILENT ?= true
export HF_HUB_OFFLINE ?= 1

.DEFAULT_GOAL := help
.PHONY: help install data demo test test-all lint pretrain clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.2"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install sglp with pinned dependencies (idempotent)

data: $(STAMP)  ## make sure Fashion-MNIST is available (Debian package when root, else instructions)
	@if $(PY) -c "from sglp.data.fashion_mnist import find_fashion_mnist as f; f('data', download=False)" 2>/dev/null; then \
		echo "Fashion-MNIST: found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Fashion-MNIST: installing the Debian package dataset-fashion-mnist"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else \
		echo "Fashion-MNIST not found. Run 'sudo apt-get install dataset-fashion-mnist', put the four IDX files in data/,"; \
		echo "or let run.py download them with torchvision (needs internet)."; \
	fi

demo: data  ## SGLP end to end on ResNet-56 / Fashion-MNIST (offline, ~6 min on 2 CPU cores)
	$(PY) run.py experiment=demo

test: data lint  ## lint, then the test suite (slow tests excluded)
	$(PY) -m pytest -q

test-all: data  ## every test, including those marked slow
	$(PY) -m pytest -q -m ""

lint: $(STAMP)  ## ruff: lint rules and formatting check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

pretrain: data  ## re-create the committed ResNet-56 Fashion-MNIST backbone (~25 min on 2 CPU cores)
	$(PY) run.py mode=pretrain experiment=pretrain overwrite=true

clean:  ## remove run outputs (keeps .venv, checkpoints and results)
	rm -rf outputs multirun .pytest_cache
