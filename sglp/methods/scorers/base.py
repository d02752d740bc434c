"""The scorer contract (`Scorer`), the calibration source every job hands it, and the base of candidate scorers
that read calibration batches."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import nn

from sglp.core.calibration import CalibrationSource, SplitCalibration  # noqa: F401 (the contract's source)
from sglp.core.device import model_device
from sglp.core.errors import InvalidArgument
from sglp.core.modes import channels_last
from sglp.core.units import SplitForward


class Scorer(ABC):
    """What the search asks of a scorer (candidate scorers and per-unit criteria alike).

    `prepare(calibration, model)` runs once before a search on the full backbone; then `scorer(model, removed,
    segment=, kept=)` -> float for each candidate, where `model` is the candidate itself (the shared backbone with
    the `removed` units bypassed) and `segment` / `kept` name the segment searched and the units it keeps.
    `maximize`: whether the highest score wins. A per-unit criterion sets `importance` ((L,), higher = keep) in
    `prepare`, and the search then keeps each segment's most important units without scoring candidates.
    `needs_grad`: scoring backpropagates (the pre-flight's memory estimate). `release()` frees caches.
    """

    maximize: bool = True
    needs_grad: bool = False
    importance: torch.Tensor | None = None
    kinds: tuple[str, ...] = ("classification", "causal_lm")  # the Task kinds whose models it can score

    @abstractmethod
    def prepare(self, calibration: CalibrationSource, model: nn.Module | None = None) -> None:
        """Fetch calibration batches (and, for a per-unit criterion, compute `importance`)."""

    @abstractmethod
    def __call__(
        self,
        model: nn.Module,
        removed: tuple[int, ...],
        segment: Sequence[int] | None = None,
        kept: Sequence[int] | None = None,
    ) -> float:
        """The candidate's score."""

    def release(self) -> None:  # noqa: B027 (optional hook: most scorers cache nothing)
        """Drop what was cached for a search (called when it ends)."""


def check_batches(owner: str, num_batches: int, batch_size: int, min_batches: int = 1) -> None:
    """InvalidArgument unless num_batches >= min_batches and batch_size >= 1 (integers)."""
    for name, value, low in (("num_batches", num_batches, min_batches), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidArgument(f"{owner}: scorer.{name}={value!r} must be an integer >= {low}")


class CalibrationScorer(Scorer):
    """A candidate scorer that holds `num_batches` calibration batches of `batch_size` examples, prepared once."""

    maximize: bool = True
    needs_grad: bool = False

    def __init__(self, num_batches: int = 1, batch_size: int = 64, reuse_prefix: bool = True) -> None:
        check_batches(type(self).__name__, num_batches, batch_size)
        self.num_batches, self.batch_size, self.reuse_prefix = num_batches, batch_size, reuse_prefix
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._prefix_key: tuple | None = None
        self._prefix: list[torch.Tensor] = []

    def prepare(self, calibration: CalibrationSource, model: nn.Module | None = None) -> None:
        """Fetch this scorer's batches once: `calibration(batch_size, num_batches)`."""
        batches = calibration(self.batch_size, self.num_batches)
        device = model_device(model) if model is not None else torch.device("cpu")
        self.batches = [(channels_last(x.to(device)), y.to(device)) for x, y in batches]
        if not self.batches:
            raise InvalidArgument(
                f"the scorer got no calibration batch of {self.batch_size} examples: lower scorer.batch_size"
            )

    def logits(
        self, model: nn.Module, removed: tuple[int, ...], segment: Sequence[int] | None, grad: bool
    ) -> list[torch.Tensor]:
        """The candidate's logits on every batch, reusing the shared prefix where that is legal.

        All candidates of a segment share the network before the segment's first unit, as long as
        the units removed before it are the same (always in independent order). When the model can
        split its forward (`features_before` / `forward_from`), that prefix runs once per segment:
        its outputs are cached (with their graph when `grad`, so gradients still reach the prefix's
        parameters: backward through it must then use `retain_graph=True`).
        """
        if not (self.reuse_prefix and segment and isinstance(model, SplitForward)):
            return [model(x) for x, _ in self.batches]
        start = min(segment)
        key = (id(model), start, tuple(u for u in removed if u < start), grad)
        if key != self._prefix_key:
            self._prefix = []  # free the previous segment's prefix (and its graph) first
            with torch.set_grad_enabled(grad):
                self._prefix = [model.features_before(start, x) for x, _ in self.batches]
            self._prefix_key = key
        return [model.forward_from(start, h) for h in self._prefix]

    def release(self) -> None:
        """Drop the cached prefix (called when a search ends)."""
        self._prefix_key, self._prefix = None, []
