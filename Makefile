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
.PHONY: help install data data-llm demo demo-llm verdicts verdicts-page scorer-study test test-all lint pretrain pretrain-llm clean tables-cpu gpu-check

help:  ## list the targets
	@grep -E '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-22s %s\n", $$1, $$2}'

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

pretrain-llm: data-llm  ## re-create the committed tiny LLaMA on the KJV corpus (~10 min on 2 CPU cores)
	$(PY) run.py mode=pretrain model=tiny_llama name=pretrain overwrite=true

# The tiny LLaMA's model yaml brings the LLM kind and its defaults (KJV, token CKA, perplexity search, LoRA, the
# local lm-eval task, 9 of 12 layers kept).
demo-llm: data-llm  ## SGLP on the tiny LLaMA: token CKA, perplexity search, LoRA, local lm-eval task (CPU)
	$(PY) run.py model=tiny_llama name=demo_llm

demo: data  ## SGLP end to end on ResNet-56 / Fashion-MNIST (offline, 5-9 min on 2 CPU cores)
	$(PY) run.py name=demo

# The verdict grid (configs/experiment/verdicts.yaml, results/README.md has the plan and its CPU-hour estimate):
# accuracy against kept blocks per method on 3 ResNet-56 backbones (seed s = backbone s), each method's own
# matched controls, budget curves. Stages in order of what a verdict needs first; every line resumes (skip_existing),
# so `make verdicts` after an interruption continues where it stopped. VERDICT_THREADS: torch threads per job.
VERDICT_THREADS ?= 2
VERDICTS := $(PY) run.py -m experiment=verdicts threads=$(VERDICT_THREADS)
VERDICT_METHODS := random,shortgpt,sglp,sglp_paper_exact
LADDER := finetune_budgets=[300,600,1200,2400]
verdicts: data  ## the verdict grid (CPU-hours; resumable): results/verdicts.md
	$(VERDICTS) search.keep=14,8 seed=0,1,2 method=$(VERDICT_METHODS) $(LADDER)
	$(VERDICTS) search.keep=22,18,11 seed=0,1,2 method=$(VERDICT_METHODS) $(LADDER)
	$(VERDICTS) seed=0,1,2 method=sglp_paper matched_controls=[in_segments,same_depth] $(LADDER)
	$(VERDICTS) seed=0,1,2 method=sglp_paper_pretrained_init,sglp_paper_k5 matched_controls=[in_segments,same_depth] $(LADDER)
	$(PY) run.py -m experiment=verdicts_vgg16 threads=$(VERDICT_THREADS) seed=0,1,2 search.keep=9,7,5 method=$(VERDICT_METHODS) $(LADDER)
	$(MAKE) -s verdicts-page

verdicts-page:  ## render results/verdicts.md (and its figures) from the verdict rows so far
	$(PY) scripts/verdicts.py results/rows/verdicts.csv results/rows/verdicts_vgg16.csv --out results/verdicts.md

scorer-study: data  ## does the in-segment score pick good layers? 50 candidates x 3 seeds x 2 depths (hours; resumable)
	$(PY) scripts/study_scorers.py --rows results/rows/scorer_study.csv --out results/scorer_study.md

test: data lint  ## lint, then the test suite (slow tests excluded)
	$(PY) -m pytest -q

test-all: data  ## every test, including those marked slow
	$(PY) -m pytest -q -m ""

lint: $(STAMP)  ## ruff: lint rules and formatting check (no cache: import sorting depends on the package tree)
	$(VENV)/bin/ruff check --no-cache .
	$(VENV)/bin/ruff format --no-cache --check .

pretrain: data  ## re-create the committed ResNet-56 Fashion-MNIST backbone (~25 min on 2 CPU cores)
	$(PY) run.py mode=pretrain name=pretrain overwrite=true

# ---- Paper tables ------------------------------------------------------------------------------------------
# A table is its folder experiments/<folder>/ (table.yaml: the runs that make it, paper.csv: the paper's numbers)
# plus the experiment configs it names. `make table-<folder>` runs its GPU jobs (the real data and weights), then
# renders results/<folder>.md/.csv/.png beside the paper's numbers; `make table-<folder>-cpu` runs the CPU stand-in.
# `make tables` lists them. Rows are keyed by the resolved config: a re-run resumes, skipping what exists.
# ARGS goes to every run.py call:
#   make table1 ARGS="dry_run=true"                      pre-flight every job (exit 2 naming the fix if one would fail)
#   make table1 ARGS="rehearse=true"                     every job end to end on synthetic data, minutes on a CPU
#   make table2 ARGS="hydra/launcher=slurm"              each sweep as a SLURM job array (configs/hydra/launcher)
# Short names: tableN, figN (SGLP paper), layerprune-tableN, each with -cpu.
TABLE_RUN := $(PY) scripts/run_table.py

tables:  ## list the paper tables (make table-<folder>[-cpu]) with their titles
	@$(TABLE_RUN) --list

table-%-cpu: data  ## CPU stand-in of a table: make table-sglp_table6-cpu (or table6-cpu)
	$(TABLE_RUN) $* --cpu $(ARGS)

table-%: data  ## a paper table on GPUs: make table-sglp_table1 (or table1); ARGS=dry_run=true for its pre-flight
	$(TABLE_RUN) $* $(ARGS)

SGLP_TABLES := $(patsubst experiments/sglp_%/paper.csv,%,$(wildcard experiments/sglp_*/paper.csv))
LAYERPRUNE_TABLES := $(patsubst experiments/layerprune_%/paper.csv,layerprune-%,$(wildcard experiments/layerprune_*/paper.csv))
.PHONY: tables $(SGLP_TABLES) $(SGLP_TABLES:%=%-cpu) $(LAYERPRUNE_TABLES) $(LAYERPRUNE_TABLES:%=%-cpu)
$(SGLP_TABLES): %: table-sglp_% ;
$(SGLP_TABLES:%=%-cpu): %-cpu: table-sglp_%-cpu ;
$(LAYERPRUNE_TABLES): layerprune-%: table-layerprune_% ;
$(LAYERPRUNE_TABLES:%=%-cpu): layerprune-%-cpu: table-layerprune_%-cpu ;

tables-cpu: table6-cpu table7-cpu fig2a-cpu fig2b-cpu  ## the committed CPU stand-ins (~75 min)

gpu-check: data data-llm  ## on a GPU: demo with DALI + bf16 + channels_last, tiny LLM prune, DDP over NCCL (<8 min); else the plan
	$(PY) scripts/gpu_check.py

clean:  ## remove run outputs (keeps .venv, checkpoints and results)
	rm -rf outputs multirun .pytest_cache
