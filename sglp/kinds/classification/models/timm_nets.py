"""timm classifiers by name (`model=timm model.name=<timm name>`), with timm's own data config.

`pretrained=true` fetches the published weights through timm (the Hugging Face hub, internet once);
`weights_path=<file>` loads a local copy of them instead (timm's `pretrained_cfg_overlay`, so the same adaptation
applies: a new classifier for `num_classes` != the weights' classes, the first conv summed over RGB for
`in_channels` != 3). Neither: random initialisation. The units come from sglp.kinds.classification.adapters.timm_models.
"""

from __future__ import annotations

import difflib
import functools
import math

from torch import nn

from sglp.core.errors import CheckpointError, InvalidArgument


def _timm():
    try:
        import timm
    except ImportError:
        raise InvalidArgument("model=timm needs timm: pip install -e '.[timm]'") from None
    return timm


def check_name(name: str) -> None:
    timm = _timm()
    if not timm.is_model(name):
        close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=4)
        raise InvalidArgument(
            f"model.name={name!r} is not a timm model" + (f" (close: {', '.join(close)})" if close else "")
            + "; timm.list_models() lists them"
        )  # fmt: skip


@functools.lru_cache(maxsize=64)
def timm_data_config(name: str) -> dict:
    """`${timm_data:<name>,<key>}`: timm's preprocessing for the model's weights: {image_size, resize, mean, std,
    interpolation}; resize = image_size / crop_pct (timm's eval transform: resize, then centre crop)."""
    check_name(name)
    cfg = _timm().models.get_pretrained_cfg(name)
    if cfg is None:  # a model without a pretrained config: timm's defaults
        return {"image_size": 224, "resize": 256, "mean": None, "std": None, "interpolation": "bilinear"}
    side = int(cfg.input_size[-1])
    return {
        "image_size": side,
        "resize": int(math.floor(side / cfg.crop_pct)),
        "mean": [float(v) for v in cfg.mean],
        "std": [float(v) for v in cfg.std],
        "interpolation": cfg.interpolation or "bilinear",
    }


def timm_classifier(
    name: str,
    num_classes: int = 1000,
    in_channels: int = 3,
    pretrained: bool = False,
    weights_path: str | None = None,
    **kwargs,
) -> nn.Module:
    """timm.create_model(name) for `num_classes` classes and `in_channels` input channels (see module docs);
    `kwargs` go to timm (e.g. img_size for a ViT, drop_path_rate)."""
    check_name(name)
    timm = _timm()
    load = {"pretrained": bool(pretrained or weights_path)}
    if weights_path:
        load["pretrained_cfg_overlay"] = {"file": str(weights_path)}
    try:
        return timm.create_model(name, num_classes=num_classes, in_chans=in_channels, **load, **kwargs)
    except FileNotFoundError:
        raise CheckpointError(f"weights_path={weights_path} does not exist") from None
    except (OSError, RuntimeError) as e:  # offline, the hub unreachable, or a file of another model
        if not load["pretrained"]:
            raise
        where = f"weights_path={weights_path}" if weights_path else f"timm's hub weights for {name}"
        raise CheckpointError(
            f"could not load {where} ({type(e).__name__}: {str(e)[:200]}). Offline: download the weights on a "
            "machine with internet (timm.create_model(name, pretrained=True) caches them) and set weights_path=<file>."
        ) from None
