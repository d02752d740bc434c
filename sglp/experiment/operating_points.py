"""Operating points: which (MACs, parameters) reductions a depth can reach, to check configs against papers.

A paper reports a pruned network by its cost columns (FLOPs ↓ %, params ↓ %), not always by its depth. Removing r
of a model's L prunable units reaches a finite set of (MACs ↓ %, params ↓ %) points, one per removal set; a
paper's row is consistent with depth L - r when one of those points lies within a tolerance of the paper's
figures (the papers round, and FLOPs counters differ in what they count: BN, pooling, additions).

Costs are counted on the real architecture built on the `meta` device (shapes only: no weights are allocated or
downloaded, a ResNet-50 costs nothing to build; a small one is then counted on a zero-filled CPU copy, which is
faster) after real surgery (`sglp.core.surgery.remove_layers`), so whatever a model's removal does (VGG slicing the next
conv, say) is counted. When removal costs add up over units (verified on
sample sets, true of residual blocks), every point follows from per-unit costs; otherwise the removal sets are
enumerated.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sglp.core.errors import InvalidArgument
from sglp.core.surgery import remove_layers
from sglp.core.units import prunable_units

MAX_ENUMERATED = 20_000  # removal sets enumerated when costs are not additive
DEFAULT_TOLERANCE_PP = 0.5  # percentage points: below one unit's share in every table here (>= 2.3 pp)
CPU_TWIN_MAX_PARAMS = 64_000_000  # meta models up to this size are counted on a CPU copy (256 MB of float32) ...
CPU_TWIN_MAX_MACS = 1e9  # ... when one forward costs at most this: above it a real CPU forward is slower than meta


def build_on_meta(factory: Callable[[], nn.Module]) -> nn.Module:
    """`factory()` on the meta device: the architecture without memory for weights."""
    with torch.device("meta"):
        return factory()


def counting_twin(model: nn.Module, max_params: int = CPU_TWIN_MAX_PARAMS) -> nn.Module:
    """A zero-filled CPU copy of a meta-device model of at most `max_params` parameters, else `model` itself.

    Counting is shape-only either way, but a forward on the meta device runs batch norm through Python
    decompositions: a CIFAR ResNet-56 counts ~2x faster on a CPU copy, an ImageNet ResNet-50 (4 GMACs) slower
    (results/bench_costs.md); `CostModel.of` uses a copy only up to CPU_TWIN_MAX_MACS.
    """
    params = list(model.parameters())
    if not params or any(p.device.type != "meta" for p in params) or sum(p.numel() for p in params) > max_params:
        return model
    twin = copy.deepcopy(model).to_empty(device="cpu")
    with torch.no_grad():
        for t in itertools.chain(twin.parameters(), twin.buffers()):
            t.zero_()
    return twin


@torch.no_grad()
def macs_and_params(model: nn.Module, input_shape: Sequence[int]) -> tuple[float, int]:
    """(multiply-accumulates of one forward pass on one example of `input_shape`, parameter count); any device,
    the meta device included. MACs = FLOPs / 2 as `torch.utils.flop_counter` counts matmuls and convolutions."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    try:
        with counter:
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2, sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class OperatingPoint:
    removed: tuple[int, ...]  # unit indices removed (0-based)
    macs_pct: float  # MACs reduction, % of the dense model's
    params_pct: float  # parameter reduction, %


@dataclass
class ReachableSet:
    """Every operating point of removing `num_removed` of `num_units` units (one per distinct cost pair)."""

    num_units: int
    num_removed: int
    points: list[OperatingPoint]

    @property
    def macs_range(self) -> tuple[float, float]:
        return min(p.macs_pct for p in self.points), max(p.macs_pct for p in self.points)

    @property
    def params_range(self) -> tuple[float, float]:
        return min(p.params_pct for p in self.points), max(p.params_pct for p in self.points)

    def closest(self, macs_pct: float | None, params_pct: float | None) -> tuple[OperatingPoint, float]:
        """The point nearest to the given figures (None = not reported) and its distance: the largest
        absolute difference over the reported columns, in percentage points."""

        def distance(p: OperatingPoint) -> float:
            d = [abs(p.macs_pct - macs_pct)] if macs_pct is not None else []
            d += [abs(p.params_pct - params_pct)] if params_pct is not None else []
            return max(d, default=0.0)

        best = min(self.points, key=distance)
        return best, distance(best)

    def describe(self) -> str:
        (f0, f1), (p0, p1) = self.macs_range, self.params_range
        return (
            f"removing {self.num_removed} of {self.num_units} units reaches MACs ↓ {f0:.2f}..{f1:.2f} %, "
            f"params ↓ {p0:.2f}..{p1:.2f} %"
        )


@dataclass
class CostModel:
    """Removal costs of one architecture: dense cost, each unit's own saving, and whether savings add up."""

    model: nn.Module
    input_shape: tuple[int, ...]
    dense_macs: float = 0.0
    dense_params: int = 0
    unit_savings: list[tuple[float, int]] = field(default_factory=list)  # (MACs, params) saved by removing unit i
    additive: bool = True
    _sets: dict[int, ReachableSet] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        model: nn.Module,
        input_shape: Sequence[int],
        checks: int = 4,
        seed: int = 0,
        cpu_copy_max_params: int = CPU_TWIN_MAX_PARAMS,
        cpu_copy_max_macs: float = CPU_TWIN_MAX_MACS,
    ) -> CostModel:
        """Count the dense model and every single removal; test additivity on `checks` random removal sets. A small
        meta-device model (up to `cpu_copy_max_params` and `cpu_copy_max_macs` a forward) is then counted on a CPU
        copy (`counting_twin`: the same counts, faster)."""
        dense = macs_and_params(model, input_shape)
        cheap = dense[0] <= cpu_copy_max_macs
        cm = cls(counting_twin(model, cpu_copy_max_params) if cheap else model, tuple(input_shape))
        cm.dense_macs, cm.dense_params = dense
        n = len(prunable_units(cm.model))
        cm.unit_savings = [cm._saving([i]) for i in range(n)]
        rng = random.Random(seed)
        samples = [rng.sample(range(n), rng.randint(2, n - 1)) for _ in range(checks)] if n > 2 else []
        cm.additive = all(cm._saving(s) == cm._summed(s) for s in samples)
        return cm

    @property
    def num_units(self) -> int:
        return len(self.unit_savings)

    def _saving(self, removed: Sequence[int]) -> tuple[float, int]:
        device = next(self.model.parameters()).device
        with torch.device(device):  # modules that surgery creates live beside the others
            macs, params = macs_and_params(remove_layers(self.model, removed), self.input_shape)
        return self.dense_macs - macs, self.dense_params - params

    def _summed(self, removed: Sequence[int]) -> tuple[float, int]:
        return sum(self.unit_savings[i][0] for i in removed), sum(self.unit_savings[i][1] for i in removed)

    def _point(self, removed: Sequence[int], saving: tuple[float, int]) -> OperatingPoint:
        return OperatingPoint(
            tuple(sorted(removed)), 100 * saving[0] / self.dense_macs, 100 * saving[1] / self.dense_params
        )

    def reachable(self, num_removed: int) -> ReachableSet:
        """All (MACs ↓, params ↓) points of removing `num_removed` units: sums over multisets of cost classes when
        savings add up, else every removal set counted (at most MAX_ENUMERATED)."""
        if not 0 < num_removed < self.num_units:
            raise InvalidArgument(f"cannot remove {num_removed} of {self.num_units} units (1..{self.num_units - 1})")
        if num_removed in self._sets:
            return self._sets[num_removed]
        points: dict[tuple[float, int], OperatingPoint] = {}
        if self.additive:  # units of equal cost are interchangeable: one point per multiset of cost classes
            classes: dict[tuple[float, int], list[int]] = {}
            for i, cost in enumerate(self.unit_savings):
                classes.setdefault(cost, []).append(i)
            members = list(classes.values())
            for counts in _compositions([len(m) for m in members], num_removed):
                removed = [i for m, c in zip(members, counts) for i in m[:c]]
                saving = self._summed(removed)
                points.setdefault(saving, self._point(removed, saving))
        else:
            total = math.comb(self.num_units, num_removed)
            if total > MAX_ENUMERATED:
                raise InvalidArgument(
                    f"removal costs of this model do not add up over units and there are {total:,} removal sets of "
                    f"{num_removed} of {self.num_units} units (> {MAX_ENUMERATED:,}): too many to enumerate"
                )
            for removed in itertools.combinations(range(self.num_units), num_removed):
                saving = self._saving(removed)
                points.setdefault(saving, self._point(removed, saving))
        self._sets[num_removed] = ReachableSet(self.num_units, num_removed, list(points.values()))
        return self._sets[num_removed]

    def depths_matching(
        self, macs_pct: float | None, params_pct: float | None, tolerance: float = DEFAULT_TOLERANCE_PP
    ) -> list[int]:
        """Numbers of units kept at which some removal set lies within `tolerance` of the given figures."""
        return [
            self.num_units - r
            for r in range(1, self.num_units)
            if self.reachable(r).closest(macs_pct, params_pct)[1] <= tolerance
        ]


def _compositions(capacities: list[int], total: int) -> list[tuple[int, ...]]:
    """Every (c_1, ..., c_g) with 0 <= c_i <= capacities[i] summing to `total`."""
    if not capacities:
        return [()] if total == 0 else []
    rest = sum(capacities[1:])
    return [
        (c, *tail)
        for c in range(max(0, total - rest), min(capacities[0], total) + 1)
        for tail in _compositions(capacities[1:], total - c)
    ]
