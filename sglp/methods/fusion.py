"""Layer fusion (O'Neill, Ver Steeg & Galstyan, ACML 2021) as a pruning strategy.

Repeatedly: among pairs of prunable units with identical parameter shapes, take the pair whose weights are
most similar (cosine similarity of all floating-point state: weights, biases, BatchNorm statistics), replace
the earlier unit by the fused unit (the average of the two, optionally after aligning the later unit's hidden
channels to the earlier one's by optimal matching) and remove the later unit; optionally retrain a few steps;
stop at the target depth. Unlike plain removal this changes weights, so it is a strategy of its own.

Alignment needs a unit that can permute its hidden channels without changing its function:
`unit.hidden_features()` -> (C, f) rows to match and `unit.permute_hidden(perm)`; CIFAR ResNet blocks have them.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import torch
from torch import nn

from sglp.core.errors import InvalidArgument, UnsupportedModelError
from sglp.core.surgery import remove_layers
from sglp.core.units import FusableUnit, prunable_units, set_submodule
from sglp.methods.search import SearchResult, target_keep
from sglp.methods.strategy import PruneResult, Retrain, Strategy, timed

log = logging.getLogger(__name__)


def same_shape(a: nn.Module, b: nn.Module) -> bool:
    """Same module type and identical state-dict keys and shapes (so the two can be averaged)."""
    sa, sb = a.state_dict(), b.state_dict()
    return type(a) is type(b) and sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)


def weight_vector(unit: nn.Module) -> torch.Tensor:
    """All floating-point state of the unit, flattened and concatenated (float64)."""
    return torch.cat([v.detach().double().flatten() for v in unit.state_dict().values() if v.is_floating_point()])


def align_hidden(reference: nn.Module, other: nn.Module) -> nn.Module:
    """A copy of `other` whose hidden channels are permuted to best match `reference`'s (maximum total inner
    product of the channels' feature rows, Hungarian algorithm). The copy computes the same function."""
    from scipy.optimize import linear_sum_assignment

    if not (isinstance(reference, FusableUnit) and isinstance(other, FusableUnit)):
        raise UnsupportedModelError(
            f"{type(other).__name__} cannot align hidden channels (no hidden_features/permute_hidden): use align=false"
        )
    a, b = reference.hidden_features().double(), other.hidden_features().double()
    _, cols = linear_sum_assignment((a @ b.T).numpy(), maximize=True)
    aligned = copy.deepcopy(other)
    aligned.permute_hidden(torch.as_tensor(cols))
    return aligned


def fuse_units(a: nn.Module, b: nn.Module, align: bool = False) -> nn.Module:
    """The average of two same-shaped units (floating-point state averaged; integer buffers from `a`)."""
    if not same_shape(a, b):
        raise InvalidArgument(f"cannot fuse {type(a).__name__} with {type(b).__name__}: parameter shapes differ")
    if align:
        b = align_hidden(a, b)
    fused = copy.deepcopy(a)
    sb = b.state_dict()
    fused.load_state_dict({k: (v + sb[k]) / 2 if v.is_floating_point() else v for k, v in a.state_dict().items()})
    return fused


def most_similar_pair(units: list[nn.Module], adjacent_only: bool) -> tuple[tuple[int, int, float] | None, int]:
    """((i, j, cosine) of the most similar same-shaped pair i < j, or None when no pair can be fused;
    the number of pairs compared)."""
    vectors = [weight_vector(u) for u in units]
    best, compared = None, 0
    for i in range(len(units)):
        for j in range(i + 1, min(len(units), i + 2) if adjacent_only else len(units)):
            if not same_shape(units[i], units[j]):
                continue
            cos = torch.nn.functional.cosine_similarity(vectors[i], vectors[j], dim=0).item()
            compared += 1
            if best is None or cos > best[2]:
                best = (i, j, cos)
    return best, compared


class LayerFusion(Strategy):
    """Fuse the most similar same-shaped units until `keep` units remain (or a `ratio` of units is gone).

    `retrain` (a recipe of the model's kind, e.g. an SGDConfig of a few hundred steps) trains the network after
    each fusion step, as the paper's iterative variant does; the training itself is the kind's, handed in as the
    call's `retrain` (Task.retrain). `None` fuses without training in between.
    """

    def __init__(
        self,
        keep: int | None = 14,
        ratio: float | None = None,
        align: bool = False,
        adjacent_only: bool = False,
        retrain: Any = None,
        seed: int = 0,
    ) -> None:
        self.keep, self.ratio, self.align, self.adjacent_only = keep, ratio, align, adjacent_only
        self.retrain, self.seed = retrain, seed

    def check(self, num_units: int) -> None:
        target_keep(num_units, self.keep, self.ratio)

    def check_task(self, task) -> None:
        super().check_task(task)
        if self.retrain is not None:  # the kind says whether it can retrain with this recipe, before any fusion
            task.check_retrain(self.retrain)

    def describe(self, result: PruneResult | None = None) -> dict[str, Any]:
        return {"scorer": None, "fusion_align": self.align, "fusion_adjacent_only": self.adjacent_only}

    def label(self, choices: dict[str, str]) -> str:
        return "fusion"

    def units_kept_target(self, num_units: int) -> int | None:
        return target_keep(num_units, self.keep, self.ratio)

    def __call__(
        self, model: nn.Module, calibration=None, cka_batches=None, data=None, progress: bool = True, journal=None,
        inplace: bool = False, retrain: Retrain | None = None,
    ) -> PruneResult:  # fmt: skip
        """Fuse the most similar neighbours until the target depth (no candidate search: `journal` is unused)."""
        num_units = len(prunable_units(model))
        keep = target_keep(num_units, self.keep, self.ratio)
        if self.retrain is not None and retrain is None:
            raise InvalidArgument("layer fusion with a retrain recipe needs the kind's training (retrain=task.retrain)")
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        pruned = model if inplace else copy.deepcopy(model)
        origin = list(range(num_units))  # original index of each current unit
        fused: list[dict[str, Any]] = []
        compared = 0
        with timed(seconds, "search"):
            while len(origin) > keep:
                units = prunable_units(pruned)
                pair, n = most_similar_pair([m for _, m in units], self.adjacent_only)
                compared += n
                if pair is None:
                    raise InvalidArgument(
                        f"layer fusion reached {len(origin)} units with no same-shaped pair left to fuse "
                        f"(target {keep}): keep more units"
                    )
                i, j, cos = pair
                set_submodule(pruned, units[i][0], fuse_units(units[i][1], units[j][1], self.align))
                pruned = remove_layers(pruned, [j], inplace=True)  # `pruned` is already this call's own
                fused.append({"into": origin[i], "removed": origin[j], "cosine": cos})
                log.info("fused unit %d into unit %d (weight cosine %.4f)", origin[j], origin[i], cos)
                del origin[j]
                if self.retrain is not None:
                    retrain(pruned, self.retrain, self.seed + len(fused))
        removed = sorted(set(range(num_units)) - set(origin))
        search = SearchResult(origin, removed, [], compared, time.perf_counter() - t0, fused, compared)
        pruned.pruned_from_units = {"units_total": num_units, "removed": removed}
        return PruneResult(None, [list(range(num_units))], search, pruned, seconds, {"fused": fused})
