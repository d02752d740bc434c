"""One call from Python: `sglp.prune(model, calibration, keep=14)` -> (pruned model, PruneReport).

The methods by name are the same components, with the same defaults, as `configs/method/<yaml>.yaml` composes for
`run.py` (tests/test_api.py instantiates both and compares them). A name has one form per model kind: `"sglp"` on a
Hugging Face causal LM is the yaml the LLM tables run (`sglp_llm`: token CKA, perplexity inside segments), on an
image classifier `sglp` (GradNorm); each form registers itself with `@method(name, kind, yaml)`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sglp.core.errors import InvalidArgument
from sglp.core.metrics import count_flops, count_parameters, reduction_pct
from sglp.core.units import prunable_units
from sglp.methods.search import SegmentSearch
from sglp.methods.strategy import SegmentedPruning, Strategy

# name -> builder -> (Strategy, (CKA batch size, CKA batches)): a depth builder(keep, ratio, k, seed), a width
# (channel) builder(flops_reduction_pct, params_reduction_pct, seed)
Built = tuple[Strategy, tuple[int, int]]
KINDS = ("classification", "causal_lm")  # configs/kind/
METHODS: dict[tuple[str, str], Callable[..., Built]] = {}  # (name, kind) -> builder
YAMLS: dict[tuple[str, str], str] = {}  # (name, kind) -> the configs/method/ yaml it equals
WIDTH: set[str] = set()  # names whose builders take cost targets (channel pruning) instead of a depth
CKA_BATCHES = (128, 2)  # configs/config.yaml's calibration.batch_size, calibration.num_batches


def method(name: str, kinds: tuple[str, ...] = ("classification",), yaml: str | None = None,
           width: bool = False) -> Callable:  # fmt: skip
    """Register a builder under `name` for these model kinds (one function per form; no chain of names anywhere);
    `yaml`: the configs/method/ file it equals (default: `name`); `width`: a channel method (cost targets)."""

    def register(builder: Callable) -> Callable:
        for kind in kinds:
            METHODS[name, kind] = builder
            YAMLS[name, kind] = yaml or name
        if width:
            WIDTH.add(name)
        return builder

    return register


def model_kind(model: nn.Module) -> str:
    """ "causal_lm" for a Hugging Face generative model (a decoder LM), else "classification"."""
    hf = type(model).__module__.startswith("transformers.")
    return "causal_lm" if hf and hasattr(model, "generate") and hasattr(model, "config") else "classification"


def _cka_fisher_gradnorm(
    estimator: str, representation: str, k: int, search: SegmentSearch, seed: int, **gradnorm: Any
) -> Strategy:
    """configs/strategy/segmented.yaml with linear CKA, Fisher segments and GradNorm: the SGLP methods' shape."""
    from sglp.core.segmentation import FisherSegmenter
    from sglp.core.similarity import CKA
    from sglp.methods.scorers.gradnorm import GradNormScorer

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
    from sglp.core.segmentation import UniformSegmenter

    return SegmentedPruning(None, UniformSegmenter(k=1), SegmentSearch(keep=keep, ratio=ratio, seed=seed), scorer,
                            name="one-shot", label_groups=("scorer",))  # fmt: skip


@method("sglp", kinds=("causal_lm",), yaml="sglp_llm")
def _sglp_llm(keep: int | None, ratio: float | None, k: int | None, seed: int) -> Built:
    """configs/method/sglp_llm.yaml with model=hf_causal_lm: unbiased linear CKA with one row per token, Fisher
    segments of full rows, every combination of the allotted size, lowest calibration perplexity kept (ours)."""
    from sglp.core.segmentation import FisherSegmenter
    from sglp.core.similarity import CKA
    from sglp.methods.scorers.perplexity import PerplexityScorer

    return SegmentedPruning(CKA("unbiased", "linear", token_rows=True),
                            FisherSegmenter(k=3 if k is None else k, representation="row"),
                            SegmentSearch(keep=keep, ratio=ratio, seed=seed),
                            PerplexityScorer(num_batches=4, batch_size=8, reuse_prefix=True)), CKA_BATCHES  # fmt: skip


@method("random", kinds=KINDS)
def _random(keep: int | None, ratio: float | None, k: int | None, seed: int) -> Built:
    from sglp.methods.criteria.random import RandomUnits

    return _one_shot(RandomUnits(seed=seed), keep, ratio, seed), CKA_BATCHES


@method("shortgpt", kinds=KINDS)
def _shortgpt(keep: int | None, ratio: float | None, k: int | None, seed: int) -> Built:
    from sglp.methods.criteria.block_influence import BlockInfluence

    return _one_shot(BlockInfluence(num_batches=2, batch_size=64), keep, ratio, seed), CKA_BATCHES


def _torch_pruning(importance: str, needs_grads: bool = False, **settings: Any) -> Callable[[], Any]:
    """A criterion factory: Torch-Pruning's `importance` class with these settings (configs/channel_criterion/)."""

    def make():
        import torch_pruning as tp

        from sglp.methods.channels.criteria import TorchPruningImportance

        return TorchPruningImportance(getattr(tp.importance, importance)(**settings), needs_grads=needs_grads)

    return make


def _criterion(cls: str, **settings: Any) -> Callable[[], Any]:
    def make():
        from sglp.methods.channels import criteria

        return getattr(criteria, cls)(**settings)

    return make


def _segmented(within: str) -> Callable[[], Any]:
    """configs/channel_criterion/sglp.yaml (its `within` score replaced for the matched control)."""

    def make():
        from sglp.methods.channels import criteria

        return criteria.SegmentedChannels(getattr(criteria, within)(), estimator="biased", representation="row_sum",
                                          order="spectral", k=4, quota="share")  # fmt: skip

    return make


# configs/method/channels_<name>.yaml -> its criterion (configs/channel_criterion/<name>.yaml), built on demand
CHANNEL_CRITERIA: dict[str, Callable[[], Any]] = {
    "channels_sglp": _segmented("ChannelGradNorm"),
    "channels_sglp_random": _segmented("RandomScores"),
    "channels_l1": _torch_pruning("MagnitudeImportance", p=1, group_reduction="first", normalizer=None),
    "channels_fpgm": _torch_pruning("FPGMImportance", p=2, group_reduction="first", normalizer=None),
    "channels_taylor": _torch_pruning("TaylorImportance", group_reduction="mean", normalizer=None, needs_grads=True),
    "channels_random": _torch_pruning("RandomImportance"),
    "channels_hrank": _criterion("HRank"),
    "channels_chip": _criterion("CHIP", max_images=32),
}


def _channels(make_criterion: Callable[[], Any]) -> Callable[..., Built]:
    """configs/strategy/channels.yaml with this criterion and the cost targets given."""

    def build(flops_reduction_pct: float, params_reduction_pct: float | None, seed: int) -> Built:
        from sglp.methods.channels.groups import RatioPolicy
        from sglp.methods.channels.strategy import ChannelPruning

        budget = RatioPolicy(flops_reduction_pct=flops_reduction_pct, params_reduction_pct=params_reduction_pct)
        return ChannelPruning(make_criterion(), budget, calib_batch_size=64, calib_batches=2), CKA_BATCHES

    return build


for _name, _make in CHANNEL_CRITERIA.items():
    method(_name, width=True)(_channels(_make))


class Calibration:
    """A calibration source from what a user has: a DataLoader (or any iterable) of (x, y) batches, or tensors x
    (N, ...) and y (N,). For a language model (`targets_are_inputs`) the inputs are token ids (N, T) and are their
    own targets: a tensor of ids, or batches of ids, (ids, ...) or {"input_ids": ids}. `source(batch_size,
    num_batches)` re-batches the first `max_examples` examples in order, wrapping around when asked for more."""

    def __init__(self, data: Any, max_examples: int = 4096, targets_are_inputs: bool = False) -> None:
        self.targets_are_inputs = targets_are_inputs
        if torch.is_tensor(data) and targets_are_inputs:
            data = [data]
        if isinstance(data, tuple | list) and len(data) == 2 and all(torch.is_tensor(t) for t in data):
            xs, ys = [data[0]], [data[1]]
        else:
            xs, ys, count = [], [], 0
            for batch in data:
                x, y = self._pair(batch)
                xs.append(x)
                ys.append(y)
                count += len(x)
                if count >= max_examples:
                    break
        if not xs or sum(len(x) for x in xs) == 0:
            raise InvalidArgument(f"calibration: no examples; give {self._wanted()}")
        self.x, self.y = torch.cat(xs)[:max_examples], torch.cat(ys)[:max_examples]

    def _wanted(self) -> str:
        if self.targets_are_inputs:
            return "token ids (N, T): a tensor, or a DataLoader of ids or of {'input_ids': ids}"
        return "a DataLoader of (inputs, labels) batches or a pair of tensors"

    def _pair(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if self.targets_are_inputs:
            ids = batch.get("input_ids") if isinstance(batch, dict) else batch
            ids = ids[0] if isinstance(ids, tuple | list) else ids
            if torch.is_tensor(ids) and ids.dim() == 2 and not ids.is_floating_point():
                return ids, ids
        elif isinstance(batch, tuple | list) and len(batch) >= 2:
            return batch[0], batch[1]
        raise InvalidArgument(f"calibration: give {self._wanted()}")

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
    extra: dict[str, Any] = field(default_factory=dict)  # the strategy's own entries (channel methods: the widths)

    @property
    def flops_reduction_pct(self) -> float:
        return reduction_pct(*self.flops)

    @property
    def params_reduction_pct(self) -> float:
        return reduction_pct(*self.params)


def prune(
    model: nn.Module,
    calibration: Iterable | torch.Tensor | tuple[torch.Tensor, torch.Tensor],
    keep: int | None = None,
    ratio: float | None = None,
    method: str = "sglp",
    k: int | None = None,
    seed: int = 0,
    progress: bool = False,
    flops_reduction_pct: float | None = None,
    params_reduction_pct: float | None = None,
) -> tuple[nn.Module, PruneReport]:
    """Prune `model` with a named method (METHODS) -> (a smaller model of the same class, PruneReport).
    Depth methods: `keep` units (or `ratio`, the fraction removed); `k` segments (the method's default when None).
    Channel methods (`channels_*`, WIDTH): every unit stays, each conv group keeps channels until the MACs fall by
    `flops_reduction_pct` (and the parameters by `params_reduction_pct`, when given). `calibration`: a DataLoader
    of (inputs, labels) or a pair of tensors; for a Hugging Face causal LM, token ids (N, T) or a DataLoader of
    them. `model` itself is left as it is."""
    kind = model_kind(model)
    if (method, kind) not in METHODS:
        names = sorted(n for n, kd in METHODS if kd == kind)
        raise InvalidArgument(f"method={method!r} for a {kind} model: choose one of {', '.join(names)}")
    if method in WIDTH:
        if keep is not None or ratio is not None or k is not None or flops_reduction_pct is None:
            raise InvalidArgument(f"method={method!r} prunes channels to a cost: give flops_reduction_pct= (and "
                                  "optionally params_reduction_pct=), not keep=, ratio= or k=")  # fmt: skip
        strategy, (batch_size, num_batches) = METHODS[method, kind](flops_reduction_pct, params_reduction_pct, seed)
    else:
        if flops_reduction_pct is not None or params_reduction_pct is not None:
            raise InvalidArgument(f"method={method!r} prunes depth: give keep= or ratio= (cost targets are for the "
                                  f"channel methods {', '.join(sorted(WIDTH))})")  # fmt: skip
        strategy, (batch_size, num_batches) = METHODS[method, kind](keep, ratio, k, seed)
    strategy.check_kind(kind)
    strategy.check(len(prunable_units(model)))
    source = Calibration(calibration, targets_are_inputs=kind == "causal_lm")
    was_training = model.training
    model.eval()
    try:
        result = strategy(model, calibration=source, cka_batches=source(batch_size, num_batches), progress=progress)
    finally:
        model.train(was_training)
    example = tuple(source.x.shape[1:])
    dtype = source.x.dtype if kind == "causal_lm" else torch.float32  # token ids, or images / signals
    report = PruneReport(
        method=method, kept=result.kept, removed=result.removed, segments=result.segments,
        similarity=result.similarity, flops=(count_flops(model, example, dtype), count_flops(result.pruned, example,
        dtype)), params=(count_parameters(model), count_parameters(result.pruned)),
        search_space=result.search.search_space, seconds=result.seconds, extra=result.extra,
    )  # fmt: skip
    return result.pruned, report
