"""The config -> component translation every mode shares: the model kind's task, the dense-measurement cache, and
the check that nothing only the user can give is left `???`."""

from __future__ import annotations

import re

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf


def check_no_missing_values(cfg: DictConfig) -> None:
    """InvalidArgument naming the first `???` value (one only the user can give, e.g. model.path) and the fix."""
    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    from sglp.core.errors import InvalidArgument

    try:
        missing = sorted(OmegaConf.missing_keys(cfg))
    except (MissingMandatoryValue, InterpolationToMissingValueError) as e:  # via an interpolation: named in e
        found = re.search(r"Missing mandatory value: (\S+)", str(e))
        missing = [found.group(1) if found else "a value"]
    if missing:
        raise InvalidArgument(f"{missing[0]} has no value: set it on the command line ({missing[0]}=...)")


def dense_cache(cfg: DictConfig, resolved: dict):
    """`dense_cache=<folder>`: the dense model's measurements keyed by its weights and everything they depend on."""
    from sglp.experiment.dense_cache import DenseCache
    from sglp.experiment.report import key_config

    if not cfg.dense_cache:
        return None
    settings = {k: key_config(resolved[k]) for k in ("kind", "dataset", "device", "latency", "lm_eval")}
    settings["kind"] = {k: v for k, v in settings["kind"].items() if k != "checkpoint"}  # the digest covers it
    return DenseCache(cfg.dense_cache, settings)


def build_task(cfg: DictConfig, device, **replace):
    """The model kind's task (configs/kind/) with its data, recovery data and fine-tuning recipe; `replace` swaps
    constructor arguments (the pre-flight passes a model built on the meta device)."""
    data = {"data": instantiate(cfg.dataset.splits, _partial_=True)}
    if cfg.dataset.get("finetune_splits"):  # recovery data of its own (an instruction set), else the training split
        data["finetune_data"] = instantiate(cfg.dataset.finetune_splits, _partial_=True)
    kind = instantiate(cfg.kind, _partial_=True, **({k: None for k in replace}))  # objects are passed as built
    return kind(**data, finetune=instantiate(cfg.finetune), device=device, progress=cfg.progress, **replace)
