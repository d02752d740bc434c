"""One call from Python: `sglp.prune(model, calibration, keep=14)` -> (pruned model, PruneReport).

The methods by name are the same components, with the same defaults, as `configs/method/<name>.yaml` composes for
`run.py` (tests/test_api.py instantiates both and compares them); each registers itself with `@method("<name>")`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sglp.errors import InvalidArgument
from sglp.metrics import count_flops, count_parameters, reduction_pct
from sglp.search import SegmentSearch
from sglp.strategy import SegmentedPruning, Strategy
from sglp.units import prunable_units

# name -> builder(keep, ratio, k, seed) -> (Strategy, (CKA batch size, CKA batches))
Built = tuple[Strategy, tuple[int, int]]
METHODS: dict[str, Callable[..., Built]] = {}
CKA_BATCHES = (128, 2)  # configs/config.yaml's calibration.batch_size, calibration.num_batches


def method(name: str) -> Callable[[Callable], Callable]:
    """Register a builder under `name` (one function per method; no chain of names anywhere)."""

    def register(builder: Callable) -> Callable:
        METHODS[name] = builder
        return builder

    return register


def _cka_fisher_gradnorm(
    estimator: str, representation: str, k: int, search: SegmentSearch, seed: int, **gradnorm: Any
) -> Strategy:
    """configs/strategy/segmented.yaml with linear CKA, Fisher segments and GradNorm: the SGLP methods' shape."""
    from sglp.scorers.gradnorm import GradNormScorer
    from sglp.segmentation import FisherSegmenter
    from sglp.similarity import CKA

    return SegmentedPruning(CKA(estimator, "linear"), FisherSegmenter(k=k, representation=representation), search,
                            GradNormScorer(num_batches=1, init_seed=seed, **gradnorm))  # fmt: skip


@method("sglp")
def _sglp(keep: int | None, ratio: float | None, k: int | None, seed: int) -> Built:
    """configs/method/sglp.yaml: unbiased linear CKA, Fisher segments of full rows, smallest GradNorm (ours)."""
    search = SegmentSearch(keep=keep, ratio=ratio, seed=seed)
    strategy = _cka_fisher_gradnorm("unbiased", "row", 3 if k is None else k, search, seed, batch_size=64,
                                    maximize=False)  # fmt: skip
    return strategy, CKA_BATCHES


@method("sglp_paper_exact")
def _sglp_paper_exact(keep: int | None, ratio: float | None, k: int | None, seed: int) -> Built:
    """configs/method/sglp_paper_exact.yaml: the paper's method meeting the depth target (see that yaml)."""
    search = SegmentSearch(keep=keep, ratio=ratio, seed=seed)
    strategy = _cka_fisher_gradnorm("biased", "row_sum", 6 if k is None else k, search, seed, batch_size=128,
                                    maximize=True, init="paper")  # fmt: skip
    return strategy, (128, 1)


def _one_shot(scorer, keep: int | None, ratio: float | None, seed: int) -> Strategy:
    """configs/strategy/one_shot.yaml: one segment, the most important units kept."""
    from sglp.segmentation import UniformSegmenter

    return SegmentedPruning(None, UniformSegmenter(k=1), SegmentSearch(keep=keep, ratio=ratio, seed=seed), scorer,
                            name="one-shot", label_groups=("scorer",))  # fmt: skip


@method("random")
def _random(keep: int | None, ratio: float | None, k: int | None, seed: int) -> Built:
    from sglp.criteria.random import RandomUnits

    return _one_shot(RandomUnits(seed=seed), keep, ratio, seed), CKA_BATCHES


@method("shortgpt")
def _shortgpt(keep: int | None, ratio: float | None, k: int | None, seed: int) -> Built:
    from sglp.criteria.block_influence import BlockInfluence

    return _one_shot(BlockInfluence(num_batches=2, batch_size=64), keep, ratio, seed), CKA_BATCHES


class Calibration:
    """A calibration source from what a user has: a DataLoader (or any iterable) of (x, y) batches, or tensors x
    (N, ...) and y (N,). `source(batch_size, num_batches)` re-batches the first `max_examples` examples in order,
    wrapping around when asked for more than there are."""

    def __init__(self, data: Any, max_examples: int = 4096) -> None:
        xs, ys = [], []
        if isinstance(data, tuple | list) and len(data) == 2 and all(torch.is_tensor(t) for t in data):
            xs, ys = [data[0]], [data[1]]
        else:
            count = 0
            for batch in data:
                if not (isinstance(batch, tuple | list) and len(batch) >= 2):
                    raise InvalidArgument(
                        "calibration: give (inputs, labels) batches (a DataLoader) or a pair of tensors"
                    )
                xs.append(batch[0])
                ys.append(batch[1])
                count += len(batch[0])
                if count >= max_examples:
                    break
        if not xs or sum(len(x) for x in xs) == 0:
            raise InvalidArgument(
                "calibration: no examples; give a DataLoader of (inputs, labels) or a pair of tensors"
            )
        self.x, self.y = torch.cat(xs)[:max_examples], torch.cat(ys)[:max_examples]

    def __call__(self, batch_size: int, num_batches: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        starts = itertools.islice(itertools.count(0, batch_size), num_batches)
        out = []
        for start in starts:
            index = torch.arange(start, start + batch_size) % n
            out.append((self.x[index], self.y[index]))
        return out


@dataclass
class PruneReport:
    """What `prune` did: units kept and removed (indices in forward order), the segments, the CKA matrix (L, L)
    when computed, and the cost before and after on one example."""

    method: str
    kept: list[int]
    removed: list[int]
    segments: list[list[int]]
    similarity: torch.Tensor | None
    flops: tuple[int, int]  # dense, pruned
    params: tuple[int, int]
    search_space: int
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def flops_reduction_pct(self) -> float:
        return reduction_pct(*self.flops)

    @property
    def params_reduction_pct(self) -> float:
        return reduction_pct(*self.params)


def prune(
    model: nn.Module,
    calibration: Iterable | tuple[torch.Tensor, torch.Tensor],
    keep: int | None = None,
    ratio: float | None = None,
    method: str = "sglp",
    k: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[nn.Module, PruneReport]:
    """Prune `model`'s depth with a named method (METHODS) -> (a smaller model of the same class, PruneReport).
    `keep` units (or `ratio`, the fraction removed); `k` segments (the method's default when None); `calibration`:
    a DataLoader of (inputs, labels) or a pair of tensors. `model` itself is left as it is."""
    if method not in METHODS:
        raise InvalidArgument(f"method={method!r}: choose one of {', '.join(sorted(METHODS))}")
    strategy, (batch_size, num_batches) = METHODS[method](keep, ratio, k, seed)
    num_units = len(prunable_units(model))
    strategy.check(num_units)
    source = Calibration(calibration)
    was_training = model.training
    model.eval()
    try:
        result = strategy(model, calibration=source, cka_batches=source(batch_size, num_batches), progress=progress)
    finally:
        model.train(was_training)
    shape = tuple(source.x.shape[1:])
    report = PruneReport(
        method=method, kept=result.kept, removed=result.removed, segments=result.segments,
        similarity=result.similarity, flops=(count_flops(model, shape), count_flops(result.pruned, shape)),
        params=(count_parameters(model), count_parameters(result.pruned)), search_space=result.search.search_space,
        seconds=result.seconds,
    )  # fmt: skip
    return result.pruned, report
