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
.PHONY: help install data data-llm demo demo-llm compare test test-all lint pretrain pretrain-llm clean

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

data-llm: $(STAMP)  ## the offline LLM corpus: the King James Bible (Debian bible-kjv) as data/kjv.txt
	@if [ -s data/kjv.txt ]; then echo "data/kjv.txt: found"; else \
		if ! command -v bible >/dev/null; then \
			if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
				apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bible-kjv >/dev/null; \
			else echo "install the Debian package bible-kjv (or put any UTF-8 text in data/kjv.txt)"; exit 1; fi; \
		fi; \
		mkdir -p data && bible "gen1:1-rev22:21" > data/kjv.txt && echo "wrote data/kjv.txt ($$(wc -c < data/kjv.txt) bytes)"; \
	fi

LLM_DEMO := model=tiny_llama dataset=kjv similarity=linear_cka_tokens scorer=perplexity finetune=lora tasks=local

pretrain-llm: data-llm  ## re-create the committed tiny LLaMA on the KJV corpus (~10 min on 2 CPU cores)
	$(PY) run.py mode=pretrain model=tiny_llama dataset=kjv pretrain=tiny_llama experiment=pretrain overwrite=true

demo-llm: data-llm  ## SGLP on the tiny LLaMA: token CKA, perplexity search, LoRA, local lm-eval task (CPU)
	$(PY) run.py $(LLM_DEMO) experiment=demo_llm search.keep=9 segmenter.k=3 calibration.batch_size=8 \
		calibration.num_batches=4 finetune.steps=200 finetune.lr=1e-3 eval_batch_size=16 latency.batch_sizes=[1,8]

TABLE_LLM := $(PY) run.py -m model=llama3_1_8b dataset=kjv similarity=linear_cka_tokens finetune=lora tasks=sglp_paper \
	experiment=table_llm search.keep=null search.ratio=0.25 finetune.bf16=true finetune.gradient_checkpointing=true \
	results_table=results/table_llm.csv skip_existing=true

table-llm:  ## GPU + hub access: LLaMA-3.1-8B at 25% of layers removed: SGLP vs ShortGPT, random, L1/L2; LoRA; 8 tasks
	$(TABLE_LLM) scorer=perplexity
	$(TABLE_LLM) segmenter=none scorer=block_influence,random,l1,l2

demo: data  ## SGLP end to end on ResNet-56 / Fashion-MNIST (offline, ~6 min on 2 CPU cores)
	$(PY) run.py experiment=demo

# Every method at the same depth (14 of 27 blocks kept), same data, same fine-tuning; rows keyed by config, so a
# re-run skips what is done. COMPARE_SEEDS=0 make compare runs one seed.
COMPARE_SEEDS ?= 0,1
COMPARE_TABLE := results/baselines_fashion_mnist.csv
COMPARE_CRITERIA := random,l1,l2,taylor,bn_gamma,feature_map,ensemble,imprint,linear_probe,block_influence,sr_init
COMPARE := $(PY) run.py -m experiment=baselines results_table=$(COMPARE_TABLE) skip_existing=true progress=false \
	seed=$(COMPARE_SEEDS)

compare: data  ## every layer-pruning method on ResNet-56 / Fashion-MNIST (~3 min per run, 15 methods x seeds)
	$(COMPARE) scorer=gradnorm,gradnorm_paper,random
	$(COMPARE) segmenter=none scorer=$(COMPARE_CRITERIA)
	$(COMPARE) strategy=fusion
	$(PY) scripts/compare_table.py $(COMPARE_TABLE) --out results/baselines_fashion_mnist.md \
		--plot results/baselines_fashion_mnist.png --command "make compare" \
		--title "Layer-pruning methods on ResNet-56 / Fashion-MNIST, 14 of 27 blocks kept"

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
