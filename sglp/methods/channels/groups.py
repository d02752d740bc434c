"""Prunable channel groups, their exact cost, the ratio policy and the removal plan.

A group is rooted at a conv whose output channels Torch-Pruning couples with nothing but layers that follow
from it alone (its BatchNorm, element-wise ops, the next conv's or linear's inputs): VGG's 13 convs, a ResNet
block's first conv. Output channels tied to a residual addition would couple every block of a stage; they are not
pruned here (as HRank and CHIP do for ResNet-56). Groups are listed in forward order.

Cost: multiply-accumulates as `torch.utils.flop_counter` counts them (convs and linears) and parameters. Pruning a
group to a fraction f of its channels scales its root's output side and its consumers' input side by f, so the cost
of any widths is exact from the dense model's per-layer costs (`WidthCost`); `tests/test_channels.py` checks it
against counting the really pruned model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sglp.core.errors import InvalidArgument, UnsupportedModelError


def _tp():
    try:
        import torch_pruning
    except ImportError as e:  # an optional dependency
        raise InvalidArgument(
            "channel pruning needs torch-pruning: pip install 'sglp[channels]' (or torch-pruning==1.6.1)"
        ) from e
    return torch_pruning


@dataclass(frozen=True)
class ChannelGroup:
    """One prunable group: its root conv's module name, its width, and the layers whose channels it sets."""

    name: str
    width: int
    outputs: tuple[str, ...]  # modules whose output channels (and 1-D parameters) follow the group: root, its BN
    inputs: tuple[str, ...]  # modules whose input channels follow the group: the next conv / linear


def dependency_graph(model: nn.Module, input_shape: Sequence[int]):
    """Torch-Pruning's DependencyGraph of `model` traced on one zero example of `input_shape` ((C, H, W))."""
    tp = _tp()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)


def root_group(graph, module: nn.Conv2d, idxs: Sequence[int] | None = None):
    """The Torch-Pruning group of `module`'s output channels `idxs` (all of them by default)."""
    tp = _tp()
    return graph.get_pruning_group(module, tp.prune_conv_out_channels, idxs=list(idxs or range(module.out_channels)))


def channel_groups(model: nn.Module, graph) -> list[ChannelGroup]:
    """The prunable groups of `model` (module docstring), in forward order."""
    names = {m: n for n, m in model.named_modules()}
    groups = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d) or module.groups != 1 or module.out_channels < 2:
            continue
        outputs, inputs = [], []
        for dep, _ in root_group(graph, module):
            layer = dep.target.module
            if layer not in names or not isinstance(layer, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)):
                continue  # element-wise ops and reshapes carry the channels; they hold no parameters
            side = "out" if "out_channels" in dep.handler.__name__ else "in"
            (outputs if side == "out" else inputs).append(names[layer])
        weighted_outputs = [n for n in outputs if not isinstance(dict(model.named_modules())[n], nn.BatchNorm2d)]
        if weighted_outputs == [name]:  # coupled with nothing but what follows from it
            groups.append(ChannelGroup(name, module.out_channels, tuple(dict.fromkeys(outputs)),
                                       tuple(dict.fromkeys(inputs))))  # fmt: skip
    if not groups:
        raise UnsupportedModelError(f"{type(model).__name__} has no conv whose output channels can be pruned alone")
    return groups


class WidthCost:
    """(MACs, parameters) of `model` with each group at any width, exact for convs, linears and BatchNorm.

    Built once from the dense model: per layer its MACs on one example of `input_shape`, its weight and its
    1-D parameters (bias, BN affine)."""

    def __init__(self, model: nn.Module, groups: Sequence[ChannelGroup], input_shape: Sequence[int]) -> None:
        self.groups = list(groups)
        self.macs: dict[str, float] = {}
        self.weights: dict[str, int] = {}
        self.vectors: dict[str, int] = {}
        hooks = []
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                hooks.append(m.register_forward_hook(self._hook(name)))
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(torch.zeros(1, *input_shape, device=device))
        finally:
            model.train(was_training)
            for h in hooks:
                h.remove()
        covered: set[str] = set()
        for name, m in model.named_modules():
            own = list(m.parameters(recurse=False))
            if not own:
                continue
            covered.add(name)
            w = getattr(m, "weight", None)
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                self.weights[name] = w.numel()
                self.vectors[name] = sum(p.numel() for p in own) - w.numel()
            else:  # BatchNorm and any other layer: its parameters are per-channel vectors (or untouched)
                self.vectors[name] = sum(p.numel() for p in own)
        self.dense = self.of([g.width for g in self.groups])

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs, output) -> None:
            if isinstance(module, nn.Conv2d):
                k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
                self.macs[name] = float(output[0].numel() * k)
            else:
                self.macs[name] = float(output[0].numel() * module.in_features)

        return hook

    def of(self, widths: Sequence[int]) -> tuple[float, int]:
        """(MACs, parameters) with group i at widths[i] channels."""
        out_frac: dict[str, float] = {}
        in_frac: dict[str, float] = {}
        for g, w in zip(self.groups, widths, strict=True):
            f = w / g.width
            for n in g.outputs:
                out_frac[n] = out_frac.get(n, 1.0) * f
            for n in g.inputs:
                in_frac[n] = in_frac.get(n, 1.0) * f
        macs = sum(v * out_frac.get(n, 1.0) * in_frac.get(n, 1.0) for n, v in self.macs.items())
        params = sum(v * out_frac.get(n, 1.0) * in_frac.get(n, 1.0) for n, v in self.weights.items())
        params += sum(v * out_frac.get(n, 1.0) for n, v in self.vectors.items())
        return macs, int(round(params))

    def reductions(self, widths: Sequence[int]) -> tuple[float, float]:
        """(MACs reduction %, parameter reduction %) of these widths against the dense model."""
        macs, params = self.of(widths)
        return 100 * (1 - macs / self.dense[0]), 100 * (1 - params / self.dense[1])


@dataclass(frozen=True)
class RatioPolicy:
    """How many channels each group keeps: group i of G removes a fraction r_i = clip(a + b (i / (G-1) - 1/2), 0,
    max_ratio) of its channels (at least one channel stays). b = 0 is a uniform ratio; b < 0 prunes early layers
    more. With `ratio` set, a = ratio and b = 0; else (a, b) are fitted so the MACs reduction meets
    `flops_reduction_pct` and, when given, the parameter reduction meets `params_reduction_pct` (ours: the paper
    states its operating points by these two columns, not by a policy)."""

    ratio: float | None = None
    flops_reduction_pct: float | None = None
    params_reduction_pct: float | None = None
    max_ratio: float = 0.9

    def __post_init__(self) -> None:
        if (self.ratio is None) == (self.flops_reduction_pct is None):
            raise InvalidArgument("channel budget: set exactly one of ratio= (uniform) or flops_reduction_pct= "
                                  f"(a cost target), got ratio={self.ratio}, flops_reduction_pct="
                                  f"{self.flops_reduction_pct}")  # fmt: skip
        if self.params_reduction_pct is not None and self.flops_reduction_pct is None:
            raise InvalidArgument("channel budget: params_reduction_pct needs flops_reduction_pct as well")
        if not 0 < self.max_ratio < 1:
            raise InvalidArgument(f"channel budget: max_ratio must lie in (0, 1), got {self.max_ratio}")
        for name in ("ratio",):
            v = getattr(self, name)
            if v is not None and not 0 <= v <= self.max_ratio:
                raise InvalidArgument(f"channel budget: {name} must lie in [0, max_ratio={self.max_ratio}], got {v}")
        for name in ("flops_reduction_pct", "params_reduction_pct"):
            v = getattr(self, name)
            if v is not None and not 0 < v < 100:
                raise InvalidArgument(f"channel budget: {name} is a percentage in (0, 100), got {v}")

    @staticmethod
    def widths(groups: Sequence[ChannelGroup], a: float, b: float, max_ratio: float) -> list[int]:
        n = len(groups)
        out = []
        for i, g in enumerate(groups):
            t = i / (n - 1) - 0.5 if n > 1 else 0.0
            r = min(max(a + b * t, 0.0), max_ratio)
            out.append(max(1, int(round(g.width * (1 - r)))))
        return out

    def fit(self, cost: WidthCost) -> tuple[list[int], float, float]:
        """(widths, a, b) for these groups (module docstring of RatioPolicy)."""
        groups, top = cost.groups, self.max_ratio
        if self.ratio is not None:
            return self.widths(groups, self.ratio, 0.0, top), self.ratio, 0.0

        def a_for(b: float) -> float:  # the MACs reduction grows with a: bisect a for the MACs target
            lo, hi = -abs(b) - 1.0, top + abs(b) + 1.0
            for _ in range(60):
                mid = (lo + hi) / 2
                if cost.reductions(self.widths(groups, mid, b, top))[0] < self.flops_reduction_pct:
                    lo = mid
                else:
                    hi = mid
            return hi

        b = 0.0
        if self.params_reduction_pct is not None:  # at a fixed MACs reduction, moving pruning later removes more
            lo, hi = -2.0, 2.0  # parameters (deeper layers hold more parameters per MAC): bisect b
            for _ in range(40):
                mid = (lo + hi) / 2
                if cost.reductions(self.widths(groups, a_for(mid), mid, top))[1] < self.params_reduction_pct:
                    lo = mid
                else:
                    hi = mid
            b = (lo + hi) / 2
        a = a_for(b)
        widths = self._refine(self.widths(groups, a, b, top), cost)
        macs_pct, params_pct = cost.reductions(widths)
        misses = [(n, want, got) for n, want, got in (("MACs", self.flops_reduction_pct, macs_pct),
                                                       ("params", self.params_reduction_pct, params_pct))
                  if want is not None and abs(want - got) > 0.5]  # fmt: skip
        if misses:
            said = ", ".join(f"{n} {got:.1f} % for {want} %" for n, want, got in misses)
            raise InvalidArgument(f"channel budget: the linear ratio policy cannot reach this target on this model "
                                  f"({said}): relax params_reduction_pct or raise max_ratio")  # fmt: skip
        return widths, a, b

    def _distance(self, widths: Sequence[int], cost: WidthCost) -> float:
        macs_pct, params_pct = cost.reductions(widths)
        d = abs(macs_pct - self.flops_reduction_pct)
        return d + (abs(params_pct - self.params_reduction_pct) if self.params_reduction_pct is not None else 0.0)

    def _refine(self, widths: list[int], cost: WidthCost, max_steps: int = 500) -> list[int]:
        """Close what rounding to whole channels left: one channel more or less in one group at a time, the step
        that brings the cost nearest the target, while one does (small networks: a channel of 16 is 6 %)."""
        widths, best = list(widths), self._distance(widths, cost)
        floor = [max(1, math.ceil(g.width * (1 - self.max_ratio))) for g in cost.groups]
        for _ in range(max_steps):
            step = None
            for i, g in enumerate(cost.groups):
                for delta in (-1, 1):
                    w = widths[i] + delta
                    if floor[i] <= w <= g.width:
                        trial = widths[:i] + [w] + widths[i + 1 :]
                        d = self._distance(trial, cost)
                        if d < best - 1e-12:
                            best, step = d, (i, w)
            if step is None:
                break
            widths[step[0]] = step[1]
        return widths


def removal_plan(groups: Sequence[ChannelGroup], kept: Sequence[Sequence[int]], input_shape: Sequence[int]) -> dict:
    """What rebuilds the pruned model from the dense one: per group, the channel indices removed."""
    plan = []
    for g, keep in zip(groups, kept, strict=True):
        k = set(int(i) for i in keep)
        plan.append([g.name, [i for i in range(g.width) if i not in k]])
    return {"input_shape": [int(s) for s in input_shape], "groups": plan}


def apply_plan(model: nn.Module, plan: dict, graph=None) -> nn.Module:
    """Remove the plan's channels from `model` in place (Torch-Pruning prunes each group and what couples with it);
    `graph`: the model's dependency graph when the caller has it."""
    graph = graph if graph is not None else dependency_graph(model, plan["input_shape"])
    modules = dict(model.named_modules())
    for name, removed in plan["groups"]:
        if name not in modules or not isinstance(modules[name], nn.Conv2d):
            raise InvalidArgument(f"channel plan names {name!r}, which is not a conv of {type(model).__name__}")
        if removed:
            root_group(graph, modules[name], removed).prune()
    return model


def keep_counts_by_share(sizes: Sequence[int], keep: int) -> list[int]:
    """Split `keep` over segments of `sizes` in proportion to their size (largest remainder), each at most its
    size and, when keep >= len(sizes), at least one."""
    total = sum(sizes)
    if not 0 < keep <= total:
        raise InvalidArgument(f"cannot keep {keep} of {total} channels")
    exact = [keep * s / total for s in sizes]
    floor = 1 if keep >= len(sizes) else 0
    counts = [min(s, max(floor, math.floor(e))) for s, e in zip(sizes, exact, strict=True)]
    while sum(counts) > keep:  # one per segment can overshoot: take back where the count exceeds its share most
        i = max((j for j in range(len(counts)) if counts[j] > floor), key=lambda j: counts[j] - exact[j])
        counts[i] -= 1
    while sum(counts) < keep:  # then the largest remainders, among segments with room
        i = max((j for j in range(len(counts)) if counts[j] < sizes[j]), key=lambda j: exact[j] - counts[j])
        counts[i] += 1
    return counts
