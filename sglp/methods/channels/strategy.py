"""`ChannelPruning`: width pruning as a `sglp.methods.strategy.Strategy`, so it runs through the same pipeline,
recovery,
measurements and rows as depth pruning (`strategy=channels`, `method=channels_<criterion>`)."""

from __future__ import annotations

import copy
import time
from typing import Any

from torch import nn

from sglp.core.errors import InvalidArgument
from sglp.core.metrics import count_flops
from sglp.core.surgery import remove_layers
from sglp.core.units import prunable_units
from sglp.methods.channels.criteria import ChannelCriterion, ChannelEvidence
from sglp.methods.channels.groups import (
    RatioPolicy,
    WidthCost,
    apply_plan,
    channel_groups,
    dependency_graph,
    removal_plan,
)
from sglp.methods.scorers.base import CalibrationSource
from sglp.methods.search import SearchResult
from sglp.methods.search_journal import SearchJournal
from sglp.methods.strategy import PruneResult, Retrain, Strategy, timed


class ChannelPruning(Strategy):
    """Prunable groups (sglp.methods.channels.groups) -> widths from the `budget` policy -> the channels each group
    keeps,
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
        retrain: Retrain | None = None,
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


class DepthThenChannels(ChannelPruning):
    """Depth and width to one total cost (ours, beyond the paper): `depth` (any depth strategy, e.g. SGLP's
    segmented search) removes units, then the survivors' channels are pruned as `ChannelPruning` does until the
    MACs reduction against the *dense* model is `budget.flops_reduction_pct` (and the parameters' against the
    dense model is `budget.params_reduction_pct`, when set). The channel step's own target follows from what depth
    removed: 1 - (1 - T) * dense / after_depth."""

    def __init__(self, depth: Strategy, criterion: ChannelCriterion, budget: RatioPolicy, calib_batch_size: int = 64,
                 calib_batches: int = 2, name: str = "depth_then_channels",
                 label_group: str = "channel_criterion") -> None:  # fmt: skip
        super().__init__(criterion, budget, calib_batch_size, calib_batches, name, label_group)
        if budget.flops_reduction_pct is None:
            raise InvalidArgument("strategy=depth_then_channels needs a total cost target: set "
                                  "strategy.budget.flops_reduction_pct (not ratio)")  # fmt: skip
        self.depth = depth

    def check(self, num_units: int) -> None:
        self.depth.check(num_units)

    def check_kind(self, kind: str) -> None:
        super().check_kind(kind)
        self.depth.check_kind(kind)

    def plan(self, model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, str]]:
        """The depth step's plan and the channel groups (the channel step's widths depend on the units depth keeps);
        InvalidArgument when every removal of the depth step's size already exceeds the total MACs target."""
        total, units = self.budget.flops_reduction_pct, len(prunable_units(model))
        keep = self.depth.units_kept_target(units)
        if keep is not None and keep < units:
            dense = count_flops(model, input_shape)
            saving = [dense - count_flops(remove_layers(model, [i]), input_shape) for i in range(units)]
            cheapest = sorted(range(units), key=saving.__getitem__)[: units - keep]
            least = 100 * (1 - count_flops(remove_layers(model, cheapest), input_shape) / dense)
            if least >= total:
                raise InvalidArgument(f"the depth step (keep {keep} of {units} units) removes {least:.1f} % of the "
                                      f"MACs even with its cheapest units, beyond the total target {total} %: keep "
                                      "more units")  # fmt: skip
        groups = channel_groups(model, dependency_graph(model, input_shape))
        return [*self.depth.plan(model, input_shape),
                ("channel groups", f"{len(groups)} prunable conv groups of {sum(g.width for g in groups):,} "
                                   f"channels; total MACs -{total} % after the depth step")]  # fmt: skip

    def step_budget(self, dense: tuple[float, float], after_depth: tuple[float, float]) -> RatioPolicy:
        """The channel step's targets (relative to the depth-pruned model) that reach the totals (relative to the
        dense model); `dense`, `after_depth`: (MACs, parameters)."""
        targets = []
        totals = (self.budget.flops_reduction_pct, self.budget.params_reduction_pct)
        for total, d, a in zip(totals, dense, after_depth, strict=True):
            step = None if total is None else 100.0 * (1.0 - (1.0 - total / 100.0) * d / a)
            if step is not None and step <= 0:
                raise InvalidArgument(f"the depth step alone already removes {100 * (1 - a / d):.1f} % of the "
                                      f"cost, beyond the total target {total} %: keep more units in the depth "
                                      "step")  # fmt: skip
            targets.append(step)
        return RatioPolicy(flops_reduction_pct=targets[0], params_reduction_pct=targets[1],
                           max_ratio=self.budget.max_ratio)  # fmt: skip

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
        input_shape = tuple(getattr(data, "input_shape", None) or cka_batches[0][0].shape[1:])
        dense = WidthCost(model, [], input_shape).dense
        depth = self.depth(model, calibration, cka_batches, data, progress=progress, journal=journal, inplace=inplace,
                           retrain=retrain)  # fmt: skip
        after_depth = WidthCost(depth.pruned, [], input_shape).dense
        step = self.step_budget(dense, after_depth)
        width = ChannelPruning(self.criterion, step, self.calib_batch_size, self.calib_batches)
        result = width(depth.pruned, calibration, cka_batches, data, progress=progress, inplace=True)
        seconds = {k: depth.seconds.get(k, 0.0) + result.seconds.get(k, 0.0) for k in {*depth.seconds, *result.seconds}}
        extra = {**depth.extra, **result.extra, "channel_step_flops_target": step.flops_reduction_pct,
                 "channel_step_params_target": step.params_reduction_pct}  # fmt: skip
        return PruneResult(depth.similarity, depth.segments, depth.search, result.pruned, seconds, extra,
                           save_meta={**depth.save_meta, **result.save_meta})  # fmt: skip

    def describe(self, result: PruneResult | None = None) -> dict[str, Any]:
        return {**self.depth.describe(result), **{k: v for k, v in super().describe(result).items()
                                                  if k.startswith("channel_")}}  # fmt: skip

    def label(self, choices: dict[str, str]) -> str:
        """e.g. depth_then_channels/segmented/fisher/gradnorm+sglp (the depth step's label, then the criterion)."""
        return f"{self.name}/{self.depth.label(choices)}+{choices.get(self.label_group)}"

    def units_kept_target(self, num_units: int) -> int | None:
        return self.depth.units_kept_target(num_units)
