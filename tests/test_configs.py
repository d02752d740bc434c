"""Every option of every config group composes and instantiates (a new yaml is tested automatically; the contracts
of scorers, segmenters, strategies, models and kinds: tests/test_contracts.py)."""

import pytest
import torch
from helpers import CONFIGS, compose_with, with_examples
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sglp.core.units import prunable_units

GROUPS = [
    "model",
    "segmenter",
    "search",
    "scorer",
    "strategy",
    "similarity",
    "finetune",
    "pretrain",
    "logger",
    "tasks",
]  # fmt: skip  (method and experiment: tests/test_experiments.py)
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONFIGS / g).glob("*.yaml"))]


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_instantiates(group, option):
    cfg = compose_with(*with_examples(f"{group}={option}"))
    if group == "model" and cfg.model.get("net", {}).get("weights"):  # hub weights: offline, build from config
        cfg = compose_with(f"{group}={option}", "model.net.weights=null")
    node = cfg[group]
    if group == "model" and node.get("kind") == "causal_lm":  # LLMs: built (tiny) or loaded, see test_llm_*
        from omegaconf import OmegaConf

        assert (OmegaConf.is_missing(node, "path") or node.path) and node.dtype  # hf_causal_lm: the user's path
        if "build" in node:
            assert (
                len(prunable_units(instantiate(node.build)(vocab_size=64))) >= 2
            )  # a partial: vocab from the tokenizer
        return
    if group == "tasks":  # task name -> metric, fixed per task
        assert node and all(v in ("acc", "acc_norm") for v in node.values())
        return
    obj = instantiate(node.net if group == "model" else node)
    assert obj is not None
    if group == "model":
        units = prunable_units(obj)
        assert len(units) >= 2
        out = obj(torch.randn(2, cfg.dataset.channels, *cfg.model.get("input_size", [16, 16])))
        assert out.shape == (2, cfg.dataset.num_classes)
        out.square().mean().backward()  # and backward: every parameter gets a gradient
        assert all(p.grad is not None for p in obj.parameters() if p.requires_grad)


def test_default_is_resnet56_fashion_mnist_fisher_gradnorm():
    cfg = compose_with("paths.root=/tmp/sglp-test")
    assert (cfg.model.name, cfg.dataset.name, cfg.mode) == ("resnet56", "fashion_mnist", "prune")
    assert cfg.logger.mode == "offline"
    assert cfg.segmenter._target_.endswith("FisherSegmenter") and cfg.scorer._target_.endswith("GradNormScorer")


DATASETS = sorted(p.stem for p in (CONFIGS / "dataset").glob("*.yaml"))


@pytest.mark.parametrize("option", DATASETS)
def test_dataset_option_composes_with_the_keys_the_pipeline_needs(option):
    cfg = compose_with(f"dataset={option}", "paths.root=/tmp/sglp-test")
    assert cfg.dataset.name == option
    if cfg.dataset.get("kind") == "text":  # a corpus for LLMs: tokenised by the model's tokenizer
        assert cfg.dataset.splits._target_.startswith("sglp.data.") and cfg.dataset.splits.seq_len > 1
        assert cfg.dataset.input_shape == [cfg.dataset.splits.seq_len]
        return
    assert len(cfg.dataset.input_shape) in (2, 3) and cfg.dataset.input_shape[0] == cfg.dataset.channels
    assert cfg.dataset.num_classes >= 2 and cfg.dataset.channels in (1, 2, 3)
    assert cfg.dataset.splits._target_.startswith("sglp.data.")
    # the model config picks up the dataset's shape
    assert cfg.model.net.num_classes == cfg.dataset.num_classes and cfg.model.net.in_channels == cfg.dataset.channels


def test_model_tiny_llama_alone_is_the_llm_demo_as_it_was_spelled_out():
    """`python run.py model=tiny_llama` composes exactly what `make demo-llm` spelled out before the model yaml
    brought its kind's defaults (the LLM kind, KJV, token CKA, perplexity, LoRA, the local task, the demo sizes)."""
    spelled_out = [
        "model=tiny_llama", "kind=causal_lm", "dataset=kjv", "similarity=linear_cka_tokens", "scorer=perplexity",
        "finetune=lora", "tasks=local", "search.keep=9", "segmenter.k=3", "calibration.batch_size=8",
        "calibration.num_batches=4", "finetune.steps=200", "finetune.lr=1e-3", "eval_batch_size=16",
        "latency.batch_sizes=[1,8]", "pretrain=tiny_llama",
    ]  # fmt: skip
    as_dict = lambda cfg: OmegaConf.to_container(cfg, resolve=True)  # noqa: E731
    assert as_dict(compose_with("model=tiny_llama", "paths.root=/tmp/sglp-test")) == as_dict(
        compose_with(*spelled_out, "paths.root=/tmp/sglp-test")
    )
