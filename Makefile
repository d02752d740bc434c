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
.PHONY: help install data data-llm demo demo-llm compare test test-all lint pretrain pretrain-llm clean tables-cpu gpu-check \
	table1 table2 table3 table4 table5 table6 table7 table8 fig2a fig2b \
	table1-cpu table2-cpu table3-cpu table4-cpu table5-cpu table6-cpu table7-cpu fig2a-cpu fig2b-cpu \
	layerprune-table1 layerprune-table2 layerprune-table3 layerprune-table4 \
	layerprune-table1-cpu layerprune-table2-cpu layerprune-table3-cpu layerprune-table4-cpu

help:  ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-22s %s\n", $$1, $$2}'

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
	$(PY) run.py mode=pretrain model=tiny_llama dataset=kjv pretrain=tiny_llama name=pretrain overwrite=true

demo-llm: data-llm  ## SGLP on the tiny LLaMA: token CKA, perplexity search, LoRA, local lm-eval task (CPU)
	$(PY) run.py $(LLM_DEMO) name=demo_llm search.keep=9 segmenter.k=3 calibration.batch_size=8 \
		calibration.num_batches=4 finetune.steps=200 finetune.lr=1e-3 eval_batch_size=16 latency.batch_sizes=[1,8]

demo: data  ## SGLP end to end on ResNet-56 / Fashion-MNIST (offline, ~6 min on 2 CPU cores)
	$(PY) run.py name=demo

# Every method at the same depth (14 of 27 blocks kept), same data, same fine-tuning; rows keyed by config, so a
# re-run skips what is done. COMPARE_SEEDS=0 make compare runs one seed.
COMPARE_SEEDS ?= 0,1
COMPARE_TABLE := results/baselines_fashion_mnist.csv
COMPARE_CRITERIA := random,l1,l2,taylor,bn_gamma,feature_map,ensemble,imprint,linear_probe,block_influence,sr_init
COMPARE := $(PY) run.py -m name=baselines results_table=$(COMPARE_TABLE) skip_existing=true progress=false \
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
	$(PY) run.py mode=pretrain name=pretrain overwrite=true

# ---- Paper tables ------------------------------------------------------------------------------------------
# `make tableN` runs the experiment configs of the paper's table N (configs/experiment/, GPU + the real data and
# weights), then scripts/make_table.py renders ours vs the paper's numbers (experiments/<table>/paper.csv) as
# results/<table>.md/.csv/.png. `make tableN-cpu` runs the CPU stand-ins (Fashion-MNIST, committed backbones).
# Rows are keyed by the resolved config: a re-run resumes, skipping what exists. ARGS goes to every run.py call:
#   make table1 ARGS="dry_run=true"                      pre-flight every job (exit 2 naming the fix if one would fail)
#   make table1 ARGS="rehearse=true"                     every job end to end on synthetic data, minutes on a CPU
#   make table2 ARGS="hydra/launcher=slurm"              each sweep as a SLURM job array (configs/hydra/launcher)
RUN := $(PY) run.py -m
TABLE := $(PY) scripts/make_table.py $(if $(findstring rehearse=true,$(ARGS)),--rehearsal)

table1: data  ## SGLP Tab. 1: CIFAR-10 VGG-16 (2 depths), ResNet-56; CIFAR-100 ResNet-56 (GPU)
	$(RUN) experiment=table1_vgg16_cifar10 $(ARGS)
	$(RUN) experiment=table1_resnet56_cifar10 $(ARGS)
	$(RUN) experiment=table1_resnet56_cifar10 method=sr_init search.keep=17 $(ARGS)
	$(RUN) experiment=table1_resnet56_cifar100 $(ARGS)
	$(RUN) experiment=table1_resnet56_cifar100 method=sr_init search.keep=20 $(ARGS)
	$(TABLE) experiments/sglp_table1
table1-cpu: data  ## CPU stand-in of Tab. 1 (Fashion-MNIST VGG-16-BN and ResNet-56)
	$(RUN) experiment=table1_vgg16_cifar10_cpu $(ARGS)
	$(RUN) experiment=table1_resnet56_cifar10_cpu $(ARGS)
	$(RUN) experiment=table1_resnet56_cifar10_cpu method=sr_init search.keep=17 $(ARGS)
	$(RUN) experiment=table1_resnet56_cifar100_cpu $(ARGS)
	$(RUN) experiment=table1_resnet56_cifar100_cpu method=sr_init search.keep=20 $(ARGS)
	$(TABLE) experiments/sglp_table1 --stand-in
table2: data  ## SGLP Tab. 2: ImageNet ResNet-50 (GPU, ImageNet + torchvision weights)
	$(RUN) experiment=table2_resnet50_imagenet $(ARGS)
	$(RUN) experiment=table2_resnet50_imagenet method=sr_init search.keep=9 $(ARGS)
	$(RUN) experiment=table2_resnet50_imagenet method=layerprune_imprint search.keep=6 $(ARGS)
	$(TABLE) experiments/sglp_table2
table2-cpu: data  ## CPU stand-in of Tab. 2 (ResNet-56 / Fashion-MNIST)
	$(RUN) experiment=table2_resnet50_imagenet_cpu $(ARGS)
	$(RUN) experiment=table2_resnet50_imagenet_cpu method=sr_init search.keep=20 $(ARGS)
	$(RUN) experiment=table2_resnet50_imagenet_cpu method=layerprune_imprint search.keep=14 $(ARGS)
	$(TABLE) experiments/sglp_table2 --stand-in
table3: data  ## SGLP Tab. 3: Imagenette2 and Imagewoof2 (GPU)
	$(RUN) experiment=table3_imagenette2 $(ARGS)
	$(RUN) experiment=table3_imagewoof2 $(ARGS)
	$(TABLE) experiments/sglp_table3
table3-cpu: data  ## CPU stand-in of Tab. 3
	$(RUN) experiment=table3_imagenette2_cpu $(ARGS)
	$(RUN) experiment=table3_imagewoof2_cpu $(ARGS)
	$(TABLE) experiments/sglp_table3 --stand-in
table4:  ## SGLP Tab. 4: LLaMA-3.1-8B, 25% of layers removed, LoRA, 8 lm-eval tasks (GPU + gated weights + hub)
	$(RUN) experiment=table4_llama3_1_8b $(ARGS)
	$(TABLE) experiments/sglp_table4
table4-cpu: data-llm  ## CPU stand-in of Tab. 4 (committed tiny LLaMA, KJV text, local task)
	$(RUN) experiment=table4_llama3_1_8b_cpu $(ARGS)
	$(TABLE) experiments/sglp_table4 --stand-in
table5:  ## SGLP Tab. 5: CNN1D on RML2016.10a, Sig2019-12, RML2018.01a at 67% pruning (data under data/)
	$(RUN) experiment=table5_rml2016 $(ARGS)
	$(RUN) experiment=table5_sig2019 $(ARGS)
	$(RUN) experiment=table5_rml2018 $(ARGS)
	$(TABLE) experiments/sglp_table5
table5-cpu: data  ## CPU stand-in of Tab. 5 (ResNet-20 / Fashion-MNIST, 67% of blocks removed)
	$(RUN) experiment=table5_rml2016_cpu $(ARGS)
	$(TABLE) experiments/sglp_table5 --stand-in
table6: data  ## SGLP Tab. 6: ablation of CKA / segmentation / GradNorm, CIFAR-10 ResNet-56 (GPU)
	$(RUN) experiment=table6 $(ARGS)
	$(TABLE) experiments/sglp_table6
table6-cpu: data  ## CPU stand-in of Tab. 6 (~12 min)
	$(RUN) experiment=table6_cpu $(ARGS)
	$(TABLE) experiments/sglp_table6 --stand-in
table7: data  ## SGLP Tab. 7: calibration batch size 128-1024, CIFAR-10 ResNet-56 (GPU)
	$(RUN) experiment=table7 $(ARGS)
	$(TABLE) experiments/sglp_table7
table7-cpu: data  ## CPU stand-in of Tab. 7 (~30 min)
	$(RUN) experiment=table7_cpu $(ARGS)
	$(TABLE) experiments/sglp_table7 --stand-in
table8:  ## SGLP Tab. 8 (channel pruning): not reproduced, see experiments/sglp_table8/README.md
	@cat experiments/sglp_table8/README.md
fig2a: data  ## SGLP Fig. 2a: accuracy vs number of segments k (GPU)
	$(RUN) experiment=fig2a $(ARGS)
	$(TABLE) experiments/sglp_fig2a
fig2a-cpu: data  ## CPU stand-in of Fig. 2a (~20 min)
	$(RUN) experiment=fig2a_cpu $(ARGS)
	$(TABLE) experiments/sglp_fig2a --stand-in
fig2b: data  ## SGLP Fig. 2b: accuracy and parameters vs kept blocks (GPU)
	$(RUN) experiment=fig2b $(ARGS)
	$(TABLE) experiments/sglp_fig2b
fig2b-cpu: data  ## CPU stand-in of Fig. 2b (~15 min)
	$(RUN) experiment=fig2b_cpu $(ARGS)
	$(TABLE) experiments/sglp_fig2b --stand-in
tables-cpu: table6-cpu table7-cpu fig2a-cpu fig2b-cpu  ## the committed CPU stand-ins (~75 min)

layerprune-table1: data  ## LayerPrune Tab. 1: VGG19-BN / CIFAR-100, criteria x 2 and 5 layers, imprint 8 (GPU)
	$(RUN) experiment=layerprune_table1_vgg19_cifar100 $(ARGS)
	$(RUN) experiment=layerprune_table1_vgg19_cifar100 method=layerprune_imprint,chen search.keep=7 $(ARGS)
	$(TABLE) experiments/layerprune_table1
layerprune-table1-cpu: data  ## CPU stand-in (VGG-16-BN / Fashion-MNIST, 12 prunable layers)
	$(RUN) experiment=layerprune_table1_vgg19_cifar100_cpu $(ARGS)
	$(RUN) experiment=layerprune_table1_vgg19_cifar100_cpu method=layerprune_imprint,chen search.keep=4 $(ARGS)
	$(TABLE) experiments/layerprune_table1 --stand-in
layerprune-table2: data  ## LayerPrune Tab. 2: ResNet-56 / CIFAR-10 and CIFAR-100 (GPU)
	$(RUN) experiment=layerprune_table2_resnet56_cifar10 $(ARGS)
	$(RUN) experiment=layerprune_table2_resnet56_cifar10 method=layerprune_imprint,chen search.keep=19 $(ARGS)
	$(RUN) experiment=layerprune_table2_resnet56_cifar10 method=layerprune_imprint search.keep=9 $(ARGS)
	$(RUN) experiment=layerprune_table2_resnet56_cifar100 $(ARGS)
	$(RUN) experiment=layerprune_table2_resnet56_cifar100 method=layerprune_imprint,chen search.keep=16 $(ARGS)
	$(RUN) experiment=layerprune_table2_resnet56_cifar100 method=layerprune_imprint search.keep=9 $(ARGS)
	$(TABLE) experiments/layerprune_table2
layerprune-table2-cpu: data  ## CPU stand-in (ResNet-56 / Fashion-MNIST; CIFAR-10 block only)
	$(RUN) experiment=layerprune_table2_resnet56_cifar10_cpu $(ARGS)
	$(RUN) experiment=layerprune_table2_resnet56_cifar10_cpu method=layerprune_imprint,chen search.keep=19 $(ARGS)
	$(RUN) experiment=layerprune_table2_resnet56_cifar10_cpu method=layerprune_imprint search.keep=9 $(ARGS)
	$(TABLE) experiments/layerprune_table2 --stand-in
layerprune-table3: data  ## LayerPrune Tab. 3: ResNet-50 / ImageNet, latency at batch 1 and 64 (GPU)
	$(RUN) experiment=layerprune_table3_resnet50_imagenet $(ARGS)
	$(RUN) experiment=layerprune_table3_resnet50_imagenet method=layerprune_imprint search.keep=9,8,6,5 $(ARGS)
	$(TABLE) experiments/layerprune_table3
layerprune-table3-cpu: data  ## CPU stand-in (ResNet-56 / Fashion-MNIST, 27 blocks)
	$(RUN) experiment=layerprune_table3_resnet50_imagenet_cpu $(ARGS)
	$(RUN) experiment=layerprune_table3_resnet50_imagenet_cpu method=layerprune_imprint search.keep=24,23,21,20 $(ARGS)
	$(TABLE) experiments/layerprune_table3 --stand-in
layerprune-table4: data  ## LayerPrune Tab. 4: six criteria x 1-4 blocks, ResNet-50 / ImageNet (GPU)
	$(RUN) experiment=layerprune_table4_resnet50_imagenet $(ARGS)
	$(TABLE) experiments/layerprune_table4
layerprune-table4-cpu: data  ## CPU stand-in (ResNet-56 / Fashion-MNIST)
	$(RUN) experiment=layerprune_table4_resnet50_imagenet_cpu $(ARGS)
	$(TABLE) experiments/layerprune_table4 --stand-in

gpu-check: data data-llm  ## on a GPU: demo with DALI + bf16 + channels_last, tiny LLM prune, DDP over NCCL (<8 min); else the plan
	$(PY) scripts/gpu_check.py

clean:  ## remove run outputs (keeps .venv, checkpoints and results)
	rm -rf outputs multirun .pytest_cache
