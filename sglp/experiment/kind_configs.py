"""What the command line does differently for each model kind (configs/kind/): how a rehearsal stands in for the
job's model and data, and how the pre-flight builds the real architecture without weights. One class per kind,
found by the kind's own name (`Task.kind` of the class `configs/kind/<kind>.yaml` names), so the command line
never compares kind names."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from sglp.core.errors import InvalidArgument

# The model configs' ways of asking for published weights (torchvision: weights / weights_path; timm: pretrained /
# weights_path), each with its value for "random initialisation".
PUBLISHED_WEIGHTS = {"weights": None, "weights_path": None, "pretrained": False}


def published_weights_off(net: DictConfig) -> dict:
    """The overrides that build `net` with random weights (only the keys it sets), for the pre-flight and rehearsal."""
    return {k: off for k, off in PUBLISHED_WEIGHTS.items() if net.get(k)}


def call_partial(obj):
    """A model from a builder config: configs with `_partial_: true` give a partial, called here."""
    return obj() if isinstance(obj, functools.partial) else obj


class KindConfig:
    """A kind's command-line translation. `language_model`: the pre-flight's memory model counts tokens."""

    language_model = False

    def rehearse(self, cfg: DictConfig, run_dir: Path) -> None:
        """Replace the job's model and data in `cfg` by synthetic stand-ins of their real shapes (in place)."""
        raise NotImplementedError

    def meta_model(self, cfg: DictConfig, build_on_meta) -> tuple[nn.Module, dict[str, str]]:
        """The real architecture on the meta device and what the dry run reports about the model and its weights."""
        raise NotImplementedError

    def param_bytes(self, cfg: DictConfig) -> int:
        return 4


class ClassifierConfig(KindConfig):
    def rehearse(self, cfg: DictConfig, run_dir: Path) -> None:
        cfg.checkpoint = None  # random weights: no checkpoint, no download
        cfg.model.net.update(published_weights_off(cfg.model.net))
        cfg.dataset.splits = {"_target_": "sglp.experiment.rehearsal.synthetic_splits", "name": cfg.dataset.name,
                              "input_shape": list(cfg.dataset.input_shape),
                              "num_classes": cfg.dataset.num_classes, "seed": cfg.seed}  # fmt: skip

    def meta_model(self, cfg: DictConfig, build_on_meta) -> tuple[nn.Module, dict[str, str]]:
        off = published_weights_off(cfg.model.net)  # published weights: fetched (or read) by the real run
        model = build_on_meta(lambda: instantiate(cfg.model.net, **off))
        said = f"{type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters"
        if off:
            said += ", published weights " + ", ".join(f"{k}={cfg.model.net[k]}" for k in off) + " (when run)"
        found = "weights as built by the model config" if cfg.checkpoint is None else (
            "found" if os.path.isfile(cfg.checkpoint) else "missing")  # fmt: skip
        return model, {"model": said, "checkpoint": f"{cfg.checkpoint} ({found})"}


class CausalLMConfig(KindConfig):
    language_model = True

    def rehearse(self, cfg: DictConfig, run_dir: Path) -> None:
        from sglp.experiment.rehearsal import rehearsal_llm, synthetic_corpus

        if not cfg.model.get("arch"):
            raise InvalidArgument(f"rehearse=true needs model.arch (the decoder's config fields) for {cfg.model.name}")
        corpus = synthetic_corpus(run_dir / "rehearsal" / "corpus.txt", seed=cfg.seed)
        arch = OmegaConf.to_container(cfg.model.arch, resolve=True)
        cfg.model.path = str(rehearsal_llm(arch, corpus, run_dir / "rehearsal" / "model"))
        cfg.model.dtype, cfg.model.device_map = "float32", None
        cfg.dataset.splits = {"_target_": "sglp.data.text.text_splits", "path": str(corpus), "seq_len": 32,
                              "calib_fraction": 0.1, "test_fraction": 0.1}  # fmt: skip
        cfg.dataset.pop("finetune_splits", None)
        cfg.tasks = {"sglp_continuation": "acc"}  # the local lm-eval task (hub tasks need the hub)
        cfg.lm_eval.task_limit, cfg.lm_eval.local_items = 16, 32

    def meta_model(self, cfg: DictConfig, build_on_meta) -> tuple[nn.Module, dict[str, str]]:
        arch = cfg.model.get("arch") or cfg.model.build
        extra = {} if cfg.model.get("arch") else {"vocab_size": cfg.model.vocab_size}
        model = build_on_meta(lambda: call_partial(instantiate(arch, **extra)))
        found = "found" if os.path.exists(cfg.model.path) else "hub id or missing"
        return model, {"model": f"{cfg.model.path} ({found})"}

    def param_bytes(self, cfg: DictConfig) -> int:
        return 2 if cfg.model.dtype in ("bfloat16", "float16") else 4


KIND_CONFIGS: dict[str, KindConfig] = {"classification": ClassifierConfig(), "causal_lm": CausalLMConfig()}


def kind_config(cfg: DictConfig) -> KindConfig:
    """The translation for the kind `cfg.kind` builds (asked of its Task class)."""
    kind = get_class(cfg.kind._target_).kind
    if kind not in KIND_CONFIGS:
        raise InvalidArgument(f"kind {kind!r} has no command-line translation: add it to "
                              "sglp.experiment.kind_configs.KIND_CONFIGS")  # fmt: skip
    return KIND_CONFIGS[kind]
