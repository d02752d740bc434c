"""Pruning strategies: the contract (`Strategy`) and the segment-then-search strategy (`SegmentedPruning`).

SGLP in the papers' sense is `SegmentedPruning` with linear CKA, Fisher segments and a GradNorm (vision) or
perplexity (LLM) search; the same class with other parts gives the ablations and the one-shot baselines (a single
segment and a per-unit criterion: LayerPrune, magnitude, ShortGPT, SR-init). Layer fusion (sglp.methods.fusion) is the
other strategy. Unit indices are 0-based in forward order everywhere (see sglp.core.units).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sglp.core.errors import InvalidArgument
from sglp.core.segmentation import Segmentation, Segmenter
from sglp.core.surgery import remove_layers
from sglp.core.units import prunable_units
from sglp.methods.scorers.base import CalibrationSource, Scorer
from sglp.methods.search import SearchResult, SegmentSearch, target_keep
from sglp.methods.search_journal import SearchJournal

log = logging.getLogger(__name__)

# The kind's training handed to a strategy: retrain(model, recipe, seed) trains `model` in place (Task.retrain).
Retrain = Callable[[nn.Module, Any, int], None]


@contextmanager
def timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall time of the enclosed stage to seconds[name] (a stage timed in two parts sums them)."""
    t = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t


@dataclass
class PruneResult:
    similarity: torch.Tensor | None  # (L, L) CKA of unit outputs, when the strategy computed it
    segments: list[list[int]]
    search: SearchResult
    pruned: nn.Module
    seconds: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)  # strategy-specific row entries
    save_meta: dict[str, Any] = field(default_factory=dict)  # what rebuilding the saved model needs beyond `removed`

    @property
    def kept(self) -> list[int]:
        return self.search.kept

    @property
    def removed(self) -> list[int]:
        return self.search.removed


class Strategy(ABC):
    """How a job prunes. `check(num_units)` fails fast on impossible settings (before any data is read);
    `strategy(model, calibration=, cka_batches=, data=, progress=, journal=, inplace=, retrain=)` returns a
    PruneResult without touching `model` (`journal`: a SearchJournal that a candidate search resumes from and writes
    to, or None), or, with `inplace=True`, with `model` itself pruned (no second copy: the job no longer needs the
    dense model); `retrain(model, recipe, seed)` is the kind's training (Task.retrain), handed in for a strategy
    that trains between its steps;
    `describe(result)` gives the row entries that identify the choice; `label` names it in rows when no method
    label is set (e.g. "segmented/fisher/gradnorm", "one-shot/l1"); `units_kept_target(num_units)` is the depth it
    was configured for (None when it sets none)."""

    @abstractmethod
    def check(self, num_units: int) -> None: ...

    @abstractmethod
    def __call__(
        self,
        model: nn.Module,
        calibration: CalibrationSource,
        cka_batches: list,
        data=None,
        progress: bool = True,
        journal: SearchJournal | None = None,
        inplace: bool = False,
        retrain: Retrain | None = None,
    ) -> PruneResult: ...

    @abstractmethod
    def describe(self, result: PruneResult | None = None) -> dict[str, Any]: ...

    @abstractmethod
    def label(self, choices: dict[str, str]) -> str:
        """The row's method name from the config groups chosen (`choices`: group -> option)."""

    def units_kept_target(self, num_units: int) -> int | None:
        return None

    def check_kind(self, kind: str) -> None:  # noqa: B027 (optional: most strategies prune any kind)
        """Fail fast when a component cannot handle this kind of model (configs/kind/<kind>)."""

    def check_task(self, task) -> None:
        """Fail fast when the task cannot give what this strategy needs (the job's and the pre-flight's check,
        before any data is read): its kind (`check_kind`) and, for a strategy that trains, the kind's training."""
        self.check_kind(task.kind)

    def plan(self, model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, str]]:
        """The pre-flight's view of what this strategy will do to `model` (check name, detail), built on the real
        architecture with any weights; SGLPError when it cannot. Depth strategies: nothing beyond `check`."""
        return []


class SegmentedPruning(Strategy):
    """Similarity -> segmenter -> per-segment search with a scorer (a candidate scorer, or a per-unit criterion).
    With `segmenter=whole` and a per-unit criterion it is one-shot ranking (`strategy=one_shot`)."""

    def __init__(self, similarity, segmenter: Segmenter, search: SegmentSearch, scorer: Scorer, name: str = "segmented",
                 label_groups: tuple[str, ...] = ("segmenter", "scorer")) -> None:  # fmt: skip
        self.similarity, self.segmenter, self.search, self.scorer = similarity, segmenter, search, scorer
        self.name, self.label_groups = name, tuple(label_groups)

    def check_kind(self, kind: str) -> None:
        if kind not in self.scorer.kinds:
            raise InvalidArgument(f"scorer {type(self.scorer).__name__} scores {' or '.join(self.scorer.kinds)} "
                                  f"models, not this {kind} model: choose another scorer (or method)")  # fmt: skip

    def check(self, num_units: int) -> None:
        self.segmenter.check(num_units)
        known = self.segmenter.k if isinstance(self.segmenter.k, int) else None
        self.search.check(num_units, self.segmenter.min_segments, known)

    def __call__(
        self,
        model: nn.Module,
        calibration: CalibrationSource,
        cka_batches: list,
        data=None,
        progress: bool = True,
        journal: SearchJournal | None = None,
        inplace: bool = False,
        retrain: Retrain | None = None,
    ) -> PruneResult:
        """CKA of unit outputs on `cka_batches` (skipped when the segmenter ignores it) -> segments -> per-segment
        search scored on `calibration` -> real removal."""
        seconds: dict[str, float] = {}
        sim = None
        if self.segmenter.needs_similarity:
            with timed(seconds, "similarity"):
                sim = self.similarity(model, cka_batches, progress=progress)
        with timed(seconds, "segmentation"):
            segmentation: Segmentation = self.segmenter(sim, len(prunable_units(model)))
        if segmentation.loss_curve:
            log.info("k=auto chose k=%d from the Fisher loss curve %s", segmentation.k,
                     [round(v, 4) for v in segmentation.loss_curve])  # fmt: skip
        with timed(seconds, "search"):
            self.scorer.prepare(calibration, model)
            result = self.search(model, segmentation.segments, self.scorer, progress=progress, journal=journal)
        with timed(seconds, "surgery"):
            pruned = remove_layers(model, result.removed, inplace=inplace)
        return PruneResult(sim, segmentation.segments, result, pruned, seconds,
                           {"fisher_loss_curve": segmentation.loss_curve})  # fmt: skip

    def describe(self, result: PruneResult | None = None) -> dict[str, Any]:
        uses_cka = self.segmenter.needs_similarity
        return {
            "scorer": type(self.scorer).__name__,
            "scorer_maximize": self.scorer.maximize,
            "cka_estimator": getattr(self.similarity, "estimator", None) if uses_cka else None,
            "k_requested": self.segmenter.k,
        }

    def label(self, choices: dict[str, str]) -> str:
        return "/".join([self.name, *(str(choices.get(g)) for g in self.label_groups)])

    def units_kept_target(self, num_units: int) -> int | None:
        """The depth the search is held to; None when it picks its own (every subset, no cap) or has counts."""
        if self.search.per_segment is not None or self.search.picks_depth:
            return None
        return target_keep(num_units, self.search.keep, self.search.ratio)


def every_subset_space(segments: list[list[int]]) -> int:
    """The SGLP paper's search space for these segments: every non-empty subset of each, sum_i (2^{n_i} - 1)
    (its Table 6 counts this way: 16,430 = segments of 14, 5, 3, 3, 1 and 1 units)."""
    return sum(2 ** len(s) - 1 for s in segments)
