"""Streaming access to prunable-unit outputs via forward hooks (one batch at a time)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from sglp.core.units import prunable_units


@contextmanager
def unit_output_hooks(model: nn.Module, on_output: Callable[[int, torch.Tensor], None]) -> Iterator[int]:
    """Call `on_output(i, output)` whenever prunable unit i runs; yields the number of units.

    The callback should reduce the output at once (e.g. to a Gram matrix) and keep no
    reference to it, so memory does not grow with the number of batches. Hooks are
    removed on exit, even on error.
    """
    units = prunable_units(model)
    handles = [
        unit.register_forward_hook(lambda _m, _inp, out, i=i: on_output(i, out)) for i, (_, unit) in enumerate(units)
    ]
    try:
        yield len(units)
    finally:
        for h in handles:
            h.remove()
