"""`ChannelPruning`: width pruning as a `sglp.strategy.Strategy`, so it runs through the same pipeline, recovery,
measurements and rows as depth pruning (`strategy=channels`, `method=channels_<criterion>`)."""

from __future__ import annotations

import copy
import time
from typing import Any

from torch import nn

from sglp.channels.criteria import ChannelCriterion, ChannelEvidence
from sglp.channels.groups import RatioPolicy, WidthCost, apply_plan, channel_groups, dependency_graph, removal_plan
from sglp.errors import InvalidArgument
from sglp.scorers.base import CalibrationSource
from sglp.search import SearchResult
from sglp.search_journal import SearchJournal
from sglp.strategy import PruneResult, Strategy, timed
from sglp.units import prunable_units


class ChannelPruning(Strategy):
    """Prunable groups (sglp.channels.groups) -> widths from the `budget` policy -> the channels each group keeps,
    chosen by `criterion` from evidence on `calib_batches` calibration batches of `calib_batch_size` -> real removal
    by Torch-Pruning. Every unit (block) stays; the row records the widths, the policy and the removal plan (saved
    with the model, so `mode=evaluate` rebuilds it)."""

    def __init__(self, criterion: ChannelCriterion, budget: RatioPolicy, calib_batch_size: int = 64,
                 calib_batches: int = 2, name: str = "channels",
                 label_group: str = "channel_criterion") -> None:  # fmt: skip
        if not isinstance(criterion, ChannelCriterion):
            raise InvalidArgument("strategy=channels needs a channel criterion: add channel_criterion=<sglp|l1|fpgm|"
                                  "taylor|random|hrank|chip> (or use method=channels_<name>)")  # fmt: skip
        for what, v in (("calib_batch_size", calib_batch_size), ("calib_batches", calib_batches)):
            if not isinstance(v, int) or v < 1:
                raise InvalidArgument(f"strategy.{what} must be an integer >= 1, got {v!r}")
        self.criterion, self.budget = criterion, budget
        self.calib_batch_size, self.calib_batches = calib_batch_size, calib_batches
        self.name, self.label_group = name, label_group

    def check(self, num_units: int) -> None:
        """Nothing depends on the number of units (every unit stays)."""

    def check_kind(self, kind: str) -> None:
        if kind != "classification":
            raise InvalidArgument(f"channel pruning prunes convolutional classifiers, not a {kind} model: choose a "
                                  "depth method for it")  # fmt: skip

    def plan(self, model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, str]]:
        """The groups and the widths the budget gives them, with the cost they reach (the real architecture)."""
        groups = channel_groups(model, dependency_graph(model, input_shape))
        cost = WidthCost(model, groups, input_shape)
        widths, a, b = self.budget.fit(cost)
        macs_pct, params_pct = cost.reductions(widths)
        return [("channel groups", f"{len(groups)} prunable conv groups of {sum(g.width for g in groups):,} channels"),
                ("channel budget", f"MACs -{macs_pct:.2f} %, params -{params_pct:.2f} % (policy a={a:.3f}, "
                                   f"b={b:.3f}): widths {widths}")]  # fmt: skip

    def __call__(
        self,
        model: nn.Module,
        calibration: CalibrationSource,
        cka_batches: list,
        data=None,
        progress: bool = True,
        journal: SearchJournal | None = None,
        inplace: bool = False,
    ) -> PruneResult:
        seconds: dict[str, float] = {}
        input_shape = tuple(getattr(data, "input_shape", None) or cka_batches[0][0].shape[1:])
        pruned = model if inplace else copy.deepcopy(model)
        num_units = len(prunable_units(pruned))
        with timed(seconds, "policy"):
            graph = dependency_graph(pruned, input_shape)
            groups = channel_groups(pruned, graph)
            widths, a, b = self.budget.fit(WidthCost(pruned, groups, input_shape))
        t = time.perf_counter()
        with timed(seconds, "search"):
            batches = calibration(self.calib_batch_size, self.calib_batches)
            evidence = ChannelEvidence(pruned, graph, groups, batches, set(self.criterion.needs))
            kept = [self.criterion.select(evidence, i, w) for i, w in enumerate(widths)]
            evidence.release()
        search_seconds = time.perf_counter() - t
        plan = removal_plan(groups, kept, input_shape)
        with timed(seconds, "surgery"):
            apply_plan(pruned, plan, graph)
        units = list(range(num_units))
        search = SearchResult(kept=units, removed=[], choices=[], search_space=0, seconds=search_seconds)
        extra = {"channel_groups": len(groups), "channel_widths_dense": [g.width for g in groups],
                 "channel_widths_kept": widths, "channel_policy_a": a, "channel_policy_b": b,
                 "channel_segments": [evidence.notes.get(i, {}).get("segment_sizes") for i in range(len(groups))]
                 if evidence.notes else None}  # fmt: skip
        return PruneResult(None, [units], search, pruned, seconds, extra, save_meta={"channel_plan": plan})

    def describe(self, result: PruneResult | None = None) -> dict[str, Any]:
        c = self.criterion.describe()
        return {"scorer": type(self.criterion).__name__, "scorer_maximize": True,
                "cka_estimator": c.get("cka_estimator"), "k_requested": c.get("channel_k"),
                "channel_criterion": c, "channel_ratio": self.budget.ratio,
                "channel_flops_target": self.budget.flops_reduction_pct,
                "channel_params_target": self.budget.params_reduction_pct}  # fmt: skip

    def label(self, choices: dict[str, str]) -> str:
        return f"{self.name}/{choices.get(self.label_group)}"
