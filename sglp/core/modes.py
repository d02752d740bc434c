"""Module mode handling shared by every stage that runs a model without training it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode (BatchNorm on running statistics); its previous mode is restored on exit,
    even on error."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """`x` in channels-last memory format when it is an image batch (4-D); other tensors as they are."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
