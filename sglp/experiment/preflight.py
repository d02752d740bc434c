"""Pre-flight of one pruning job: will it start, will it fit, what will it reach, how long will it take.

Runs every check that needs neither data nor weights, on the real architecture built on the meta device:

- units: the model's prunable units are counted, and the strategy's own validation runs against that count
  (depth target, k, segments), as the real run would before any expensive stage;
- calibration: the CKA batches and each scorer's batches against the size of the calibration split;
- operating point: the (MACs ↓, params ↓) range reachable at the configured depth
  (sglp.experiment.operating_points), and
  every paper row this job reproduces (experiments/<table>/paper.csv) within tolerance;
- memory: peak of the CKA stage (L transformed n x n Grams in float64, stacked once more) and of the search
  (weights, gradients and activations of a scorer batch, or an inference pass) against the device's memory;
- search size: candidates for equal-size segments and the extremes over the segmentations the CKA could pick;
- time: a FLOP-count estimate of every stage at an assumed effective device rate (stated in the report).

`preflight(...)` returns the checks; `report(...)` renders them; failing checks carry the fix.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sglp.core.errors import InvalidArgument, SGLPError
from sglp.core.segmentation import contiguous_segments, uniform_segments
from sglp.core.units import prunable_units
from sglp.experiment.operating_points import DEFAULT_TOLERANCE_PP, CostModel

GB = 1024**3


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass
class JobSpec:
    """What the pre-flight needs to know of a job (run.py fills it from the config)."""

    name: str  # experiment
    method: str  # row label
    model: nn.Module  # the architecture on the meta device
    input_shape: tuple[int, ...]  # one example: (C, H, W), (C, L) or (tokens,)
    num_train: int
    num_test: int
    num_calib: int  # examples (or sequences) in the calibration split
    calib_batch_size: int
    calib_batches: int
    language_model: bool = False  # examples are token sequences; no MACs operating point
    token_rows: bool = False  # CKA rows are tokens (LLMs): n = batch x tokens
    cka_form: str = "auto"  # similarity.form: gram | features | auto (sglp.core.similarity.uses_features)
    cka_kernel: str = "linear"
    finetune_examples: int = 0  # examples seen by fine-tuning
    pretrain_examples: int = 0  # examples seen by pretraining first (a missing backbone with pretrain_if_missing)
    param_bytes: int = 4  # bytes per weight and activation at run time (bf16: 2)
    stand_in: bool = False  # a CPU stand-in: its architecture is not the paper's, no paper rows apply
    experiments_dir: Path | None = None


@dataclass
class Profile:
    """One forward pass of one example on the meta device, measured once."""

    flops: float  # of the forward pass
    activation_bytes: float  # every leaf module's output: what a backward pass keeps
    largest_activation_bytes: float  # the largest: roughly what an inference pass holds at a time
    unit_widths: list[int]  # features per CKA row of each unit's output (a token's width when rows are tokens)


def _profile(model: nn.Module, input_shape: Sequence[int], bytes_per: int, token_rows: bool) -> Profile:
    from torch.utils.flop_counter import FlopCounterMode

    from sglp.core.activations import unit_output_hooks

    sizes: list[int] = []
    widths: dict[int, int] = {}

    def record(i: int, out: torch.Tensor) -> None:
        widths[i] = int(out.shape[-1]) if token_rows else int(out[0].numel())

    hooks = [
        m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel() if torch.is_tensor(out) else 0))
        for m in model.modules()
        if not list(m.children())
    ]
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), unit_output_hooks(model, record), counter:
            model.eval()
            x = _example(model, input_shape)
            model(x) if not isinstance(x, dict) else model(**x)
    finally:
        for h in hooks:
            h.remove()
    return Profile(
        float(counter.get_total_flops()),
        float(bytes_per * sum(sizes)),
        float(bytes_per * max(sizes, default=0)),
        [widths[i] for i in sorted(widths)],
    )


def cka_bytes(widths: Sequence[int], rows: int, form: str, kernel: str, itemsize: int = 4) -> tuple[float, str]:
    """Peak bytes of one CKA batch and the form it takes (sglp.core.similarity.CKAAccumulator): the feature form holds
    every layer's features in the model's dtype (`itemsize` bytes), two float64 row chunks and one (d_i, d_j)
    product; the Gram form L transformed (rows, rows) float64 Grams and one being built."""
    from sglp.core.similarity import FEATURE_CHUNK_ROWS, uses_features

    if all(uses_features(form, kernel, rows, w, itemsize) for w in widths):
        chunk = min(rows, FEATURE_CHUNK_ROWS)
        return itemsize * rows * sum(widths) + 8.0 * (2 * chunk * max(widths) + 2 * max(widths) ** 2), "features"
    return 8.0 * (len(widths) + 2) * rows**2, "gram"


def _example(model: nn.Module, input_shape: Sequence[int]):
    device = next(model.parameters()).device
    if len(input_shape) == 1:  # a causal LM: token ids (eager attention: SDPA's mask shortcuts read values)
        model.config._attn_implementation = "eager"
        ids = torch.zeros(1, *input_shape, dtype=torch.long, device=device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "use_cache": False}
    return torch.zeros(1, *input_shape, device=device)


_COST_MODELS: dict[tuple[str, tuple[int, ...]], CostModel] = {}


def _cost_model(model: nn.Module, input_shape: Sequence[int]) -> CostModel:
    """One cost model per architecture and input shape in this process (a sweep's jobs share it)."""
    key = (repr(model), tuple(input_shape))
    if key not in _COST_MODELS:
        _COST_MODELS[key] = CostModel.of(model, input_shape)
    return _COST_MODELS[key]


def _candidates(segments: list[list[int]], search) -> int:
    """Candidates the search scores on these segments (its plan, space and budget)."""
    alloc = search.plan(segments)
    if search.budget is None:
        return search.search_space(segments, alloc)
    return sum(min(search.budget, search.search_space([s], [m])) for s, m in zip(segments, alloc))


def _segmentations(num_units: int, k: int):
    """Every way of cutting `num_units` units into k contiguous, non-empty segments."""
    for cuts in itertools.combinations(range(1, num_units), k - 1):
        yield contiguous_segments((0, *cuts, num_units))


MAX_SEGMENTATIONS = 20_000  # beyond this many ways to cut the units, only equal and one-large segments are tried


@dataclass
class SearchSize:
    """Candidates the search scores: `equal` for equal-size segments (None when they do not fit
    `search.per_segment`), the extremes over the segmentations tried (all of them when `every_segmentation`); the
    CKA decides which segmentation a run gets."""

    equal: int | None
    fewest: int
    most: int
    most_sizes: list[int]
    every_segmentation: bool

    def describe(self) -> str:
        equal = (f"{self.equal:,} candidates for equal-size segments" if self.equal is not None
                 else "equal-size segments do not fit search.per_segment")  # fmt: skip
        if self.most == self.fewest and self.equal is not None:
            return equal
        spread = (f"{self.fewest:,}-{self.most:,} over every segmentation into {len(self.most_sizes)}"
                  if self.every_segmentation else f"{self.most:,} if one segment holds almost every unit")  # fmt: skip
        return (
            f"{equal}; {spread} (the most for segment sizes {self.most_sizes}): the CKA picks the segments, "
            "and the run logs its real count"
        )


def search_size(num_units: int, k: int, search) -> SearchSize | None:
    """Candidates of `search` over k contiguous segments of `num_units`, for equal sizes and at the extremes;
    None when no segmentation tried fits `search.per_segment` (the run checks it against its real segments)."""
    equal = uniform_segments(num_units, k)
    every_segmentation = math.comb(num_units - 1, k - 1) <= MAX_SEGMENTATIONS
    one_large = contiguous_segments([0, *range(num_units - k + 1, num_units + 1)])
    tried = _segmentations(num_units, k) if every_segmentation else [equal, one_large]
    counts = {}
    for segments in tried:
        try:
            counts[tuple(map(len, segments))] = _candidates(segments, search)
        except InvalidArgument:  # search.per_segment does not fit these sizes
            continue
    if not counts:
        return None
    most = max(counts, key=counts.__getitem__)
    return SearchSize(counts.get(tuple(map(len, equal))), min(counts.values()), counts[most], list(most),
                      every_segmentation)  # fmt: skip


def preflight(
    job: JobSpec,
    strategy,
    device_memory_gb: float = 80.0,
    device_tflops: float = 100.0,
    device_examples_per_s: float = 10_000.0,
    tolerance_pp: float = DEFAULT_TOLERANCE_PP,
) -> list[Check]:
    """Every check of the module docstring for one job; a check that cannot pass has `ok=False` and a fix."""
    checks: list[Check] = []
    num_units = len(prunable_units(job.model))
    checks.append(Check("units", True, f"{type(job.model).__name__}: {num_units} prunable units"))
    try:
        strategy.check(num_units)
        checks.append(Check("strategy", True, "its settings are valid for this model's units"))
    except SGLPError as e:
        checks.append(Check("strategy", False, str(e), "set search.keep / segmenter.k for this model's unit count"))
        return checks
    try:
        checks.extend(Check(name, True, detail) for name, detail in strategy.plan(job.model, job.input_shape))
    except SGLPError as e:
        checks.append(Check("strategy plan", False, str(e), "change the strategy's budget for this model"))
        return checks

    search = getattr(strategy, "search", None)
    segmenter = getattr(strategy, "segmenter", None)
    scorer = getattr(strategy, "scorer", None)
    keep = strategy.units_kept_target(num_units)

    n_cka = job.calib_batch_size * job.calib_batches
    if job.calib_batch_size > job.num_calib:
        checks.append(Check("calibration", False,
                            f"calibration.batch_size={job.calib_batch_size} > the {job.num_calib} examples of the "
                            "calibration split: no CKA batch", "lower calibration.batch_size"))  # fmt: skip
    else:
        got = min(job.calib_batches, job.num_calib // job.calib_batch_size)
        checks.append(Check("calibration", True, f"CKA on {got} batch(es) of {job.calib_batch_size}"))
    if scorer is not None and getattr(scorer, "batch_size", None):
        batches = getattr(scorer, "num_batches", 1)
        if batches and scorer.batch_size > job.num_calib:
            checks.append(Check("scorer batches", False,
                                f"scorer.batch_size={scorer.batch_size} > the {job.num_calib} calibration examples",
                                "lower scorer.batch_size"))  # fmt: skip
        else:
            checks.append(Check("scorer batches", True, f"{type(scorer).__name__}: {batches} x {scorer.batch_size}"))

    if keep is not None and keep < num_units and not job.language_model:
        cost = _cost_model(job.model, job.input_shape)
        reach = cost.reachable(num_units - keep)
        checks.append(Check("operating point", True, reach.describe()))
        checks.extend(_paper_checks(job, cost, keep, reach, tolerance_pp))

    budget = device_memory_gb * GB
    params = sum(p.numel() for p in job.model.parameters())
    weights = params * job.param_bytes
    profile = _profile(job.model, job.input_shape, job.param_bytes, job.token_rows)
    act_all, act_max, widths = profile.activation_bytes, profile.largest_activation_bytes, profile.unit_widths
    needs_similarity = getattr(segmenter, "needs_similarity", True) and getattr(strategy, "similarity", None)
    if needs_similarity:
        rows = job.calib_batch_size * (job.input_shape[0] if job.token_rows else 1)
        held, form = cka_bytes(widths, rows, job.cka_form, job.cka_kernel, job.param_bytes)
        what = (f"{num_units} Grams of {rows:,} x {rows:,} float64" if form == "gram" else
                f"{num_units} feature matrices of {rows:,} rows x {max(widths):,} at {job.param_bytes} B")  # fmt: skip
        cka = weights + held + 2 * act_max * job.calib_batch_size
        checks.append(_memory_check("memory: CKA", cka, budget, f"{what} = {held / GB:.1f} GB ({form} form)",
                                    "lower calibration.batch_size, or similarity.form=features when the layers "
                                    "are narrower than the batch has rows"))  # fmt: skip
    if scorer is not None:
        b = getattr(scorer, "batch_size", job.calib_batch_size)
        grad = getattr(scorer, "needs_grad", False)
        need = weights + (params * 4 + act_all * b if grad else 2 * act_max * b)
        what = "weights, gradients and saved activations" if grad else "weights and one inference pass"
        checks.append(_memory_check("memory: search", need, budget, f"{what} of a batch of {b}",
                                    "lower scorer.batch_size"))  # fmt: skip
    # the surgery builds the pruned model on a copy (sglp.core.surgery.remove_layers): dense and pruned weights together
    checks.append(_memory_check("memory: surgery", 2 * weights, budget, "the dense weights and the pruned copy",
                                "room for the model twice, or model.device_map=auto over several devices"))  # fmt: skip

    flops = profile.flops
    passes = {  # stage -> forward-pass equivalents of one example (a backward pass counts as two)
        "eval (dense + 2 x pruned)": 3 * job.num_test,
        "CKA": n_cka if needs_similarity else 0,
        "fine-tune": 3 * job.finetune_examples,
        "pretrain": 3 * job.pretrain_examples,
    }
    if scorer is not None and search is not None and segmenter is not None:
        k = int(getattr(segmenter, "k", 1)) if getattr(segmenter, "k", 1) != "auto" else 3
        size = search_size(num_units, k, search)
        per = (3 if getattr(scorer, "needs_grad", False) else 1) * getattr(scorer, "batch_size", 1)
        if size is None:
            checks.append(Check("search size", True, "search.per_segment fits none of the segmentations tried: "
                                "the run checks it against the CKA's segments"))  # fmt: skip
        else:
            if size.equal is None:
                stage, count = "search (fewest)", size.fewest
            else:
                stage, count = ("search" if size.most == size.fewest else "search (equal segments)"), size.equal
            passes[stage] = count * per * max(1, getattr(scorer, "num_batches", 1))
            checks.append(Check("search size", True, size.describe()))
    # a stage takes the longer of its FLOPs at the effective rate and its examples at the example-rate cap (small
    # models are bound by kernel launches and data loading, not arithmetic)
    seconds = {k: max(n * flops / (device_tflops * 1e12), n / device_examples_per_s) for k, n in passes.items() if n}
    detail = ", ".join(f"{k} {_hms(v)}" for k, v in seconds.items())
    rates = f"{device_tflops:g} TFLOP/s, at most {device_examples_per_s:,.0f} examples/s"
    checks.append(Check("time (estimate)", True, f"{_hms(sum(seconds.values()))} at {rates}: {detail}"))
    return checks


def _paper_checks(job: JobSpec, cost: CostModel, keep: int, reach, tolerance_pp: float) -> list[Check]:
    from sglp.experiment.tables import as_number, paper_cost_rows_for

    if job.stand_in or job.experiments_dir is None:
        return []
    out = []
    rows = paper_cost_rows_for(job.experiments_dir, job.name, job.method, keep)
    if not rows:
        elsewhere = sorted(
            {int(as_number(r["units_kept"])) for _, r in paper_cost_rows_for(job.experiments_dir, job.name, job.method)}
        )
        if elsewhere:
            out.append(
                Check("paper", True, f"no paper row at {keep} kept (its rows of {job.method}: {elsewhere} kept)")
            )
    for table, row in rows:
        macs, params = as_number(row.get("flops")), as_number(row.get("params"))
        nearest, dist = reach.closest(macs, params)
        label = f"paper: {table} {row['paper_method']}"
        if row.get("operating_point") == "quoted":
            out.append(Check(label, True, f"quoted point {macs} / {params} (not reachable by removing whole units)"))
        elif dist <= tolerance_pp:
            out.append(
                Check(label, True, f"{macs} / {params} reached within {dist:.2f} pp by removing {nearest.removed}")
            )
        else:
            depths = cost.depths_matching(macs, params, tolerance_pp)
            fix = f"search.keep={depths[0]}" if depths else "no depth reaches it: mark the row quoted"
            out.append(Check(label, False, f"{macs} / {params} is {dist:.2f} pp from any point at {keep} kept", fix))
    return out


def _memory_check(name: str, need: float, budget: float, what: str, fix: str) -> Check:
    detail = f"{need / GB:.1f} GB of {budget / GB:.0f} GB ({what})"
    return Check(name, need <= budget, detail, "" if need <= budget else fix)


def _hms(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def report(job: JobSpec, checks: list[Check]) -> str:
    """A Markdown table of the checks, headed by the job."""
    lines = [f"pre-flight {job.name} [{job.method}]", "", "| check | ok | detail |", "|---|---|---|"]
    for c in checks:
        detail = c.detail + (f" — fix: {c.fix}" if c.fix else "")
        lines.append(f"| {c.name} | {'yes' if c.ok else 'NO'} | {detail} |")
    return "\n".join(lines)


def raise_on_failure(job: JobSpec, checks: list[Check]) -> None:
    failed = [c for c in checks if not c.ok]
    if failed:
        reasons = "; ".join(f"{c.name}: {c.detail}. Fix: {c.fix}" for c in failed)
        raise InvalidArgument(f"pre-flight of {job.name} [{job.method}] failed: {reasons}")
