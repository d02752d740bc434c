"""The SGLP run: the method (`sglp_prune`, or the `SGLP` strategy) and the full job around any strategy (`run_pruning`).

Plain functions over modules, data and configured components; `run.py` builds those from
the Hydra config. Unit indices are 0-based in forward order everywhere (see sglp.units).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sglp.checkpoint import load_weights, save_checkpoint
from sglp.data.batches import ImageSplits
from sglp.device import resolve_device
from sglp.errors import CheckpointError
from sglp.metrics import count_flops, count_parameters, measure_latency, reduction_pct
from sglp.plots import plot_cka, plot_kept_units
from sglp.report import NullLogger, git_commit, publish_row
from sglp.scorers.base import SplitCalibration
from sglp.search import SearchResult, target_keep
from sglp.surgery import remove_layers
from sglp.training import SGDConfig, evaluate, to_memory_format, train
from sglp.units import prunable_units, unit_width

log = logging.getLogger(__name__)


@contextmanager
def timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Record the wall time of the enclosed stage as seconds[name]."""
    t = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = time.perf_counter() - t


@dataclass
class PruneResult:
    similarity: torch.Tensor | None  # (L, L) CKA of unit outputs, when the strategy computed it
    segments: list[list[int]]
    search: SearchResult
    pruned: nn.Module
    seconds: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)  # strategy-specific row entries

    @property
    def kept(self) -> list[int]:
        return self.search.kept

    @property
    def removed(self) -> list[int]:
        return self.search.removed


def sglp_prune(
    model: nn.Module, calibration, similarity, segmenter, search, scorer, cka_batches, progress: bool = True
) -> PruneResult:
    """SGLP on a trained `model`: CKA of unit outputs on `cka_batches` -> `segmenter` -> per-segment
    `search` scored by `scorer` (calibration(batch_size, num_batches) feeds it) -> real removal.
    A segmenter that ignores similarity (`needs_similarity = False`) skips the CKA stage."""
    seconds: dict[str, float] = {}
    sim = None
    if getattr(segmenter, "needs_similarity", True):
        with timed(seconds, "similarity"):
            sim = similarity(model, cka_batches, progress=progress)
    with timed(seconds, "segmentation"):
        segments = segmenter(sim if sim is not None else len(prunable_units(model)))
    if getattr(segmenter, "loss_curve", None):
        log.info(
            "k=auto chose k=%d from the Fisher loss curve %s",
            len(segments),
            [round(v, 4) for v in segmenter.loss_curve],
        )
    with timed(seconds, "search"):
        scorer.prepare(calibration, model)
        result = search(model, segments, scorer, progress=progress)
    with timed(seconds, "surgery"):
        pruned = remove_layers(model, result.removed)
    return PruneResult(sim, segments, result, pruned, seconds)


class SGLP:
    """The pruning strategy of the SGLP family: similarity -> segmenter -> per-segment search with a scorer
    (a candidate scorer, or a per-unit criterion; `segmenter=none` + a criterion is one-shot ranking).

    Strategy contract (also met by sglp.fusion.LayerFusion): `check(num_units)` fails fast on impossible
    settings; `strategy(model, calibration=, cka_batches=, data=, progress=)` returns a PruneResult
    without touching `model`; `describe()` gives the row entries that identify the choice;
    `label_groups` names the config groups that complete the method's label.
    """

    label_groups = ("segmenter", "scorer")

    def __init__(self, similarity, segmenter, search, scorer) -> None:
        self.similarity, self.segmenter, self.search, self.scorer = similarity, segmenter, search, scorer

    def check(self, num_units: int) -> None:
        check_settings(num_units, self.segmenter, self.search)

    def __call__(self, model: nn.Module, calibration, cka_batches, data=None, progress: bool = True) -> PruneResult:
        return sglp_prune(
            model, calibration, self.similarity, self.segmenter, self.search, self.scorer, cka_batches, progress
        )

    def describe(self) -> dict[str, Any]:
        return {
            "scorer": type(self.scorer).__name__,
            "scorer_maximize": getattr(self.scorer, "maximize", None),
            "cka_estimator": getattr(self.similarity, "estimator", None)
            if getattr(self.segmenter, "needs_similarity", True)
            else None,
            "k_requested": getattr(self.segmenter, "k", None),
            "fisher_loss_curve": getattr(self.segmenter, "loss_curve", None),
        }


@dataclass
class PruneSettings:
    calib_batch_size: int = 128
    calib_batches: int = 2
    eval_batch_size: int = 500
    eval_max_batches: int | None = None
    latency_batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 64])
    latency_threads: int | None = None
    latency_min_run_time: float = 1.0
    save_pruned_model: bool = True
    seed: int = 0
    progress: bool = True
    device: str = "auto"  # auto = this rank's GPU if CUDA is present, else the CPU


def check_settings(num_units: int, segmenter, search) -> None:
    """Fail fast on impossible settings, before any expensive stage."""
    segmenter.check(num_units)
    search.check(num_units, segmenter.min_segments)


def units_kept_target(strategy, num_units: int) -> int | None:
    """The depth the strategy was configured for (its search's or its own keep/ratio), None when it sets none.
    A search whose candidates may keep fewer (the paper's every-subset space) reports both this and `units_kept`."""
    target = getattr(strategy, "search", strategy)
    if getattr(target, "per_segment", None) is not None or not hasattr(target, "keep"):
        return None
    return target_keep(num_units, target.keep, getattr(target, "ratio", None))


def every_subset_space(segments: list[list[int]]) -> int:
    """The SGLP paper's search space for these segments: every non-empty subset of each, sum_i (2^{n_i} - 1)
    (its Table 6 counts this way: 16,430 = segments of 14, 5, 3, 3, 1 and 1 units)."""
    return sum(2 ** len(s) - 1 for s in segments)


def _cost(model: nn.Module, input_shape: tuple[int, ...], s: PruneSettings) -> dict[str, float]:
    out: dict[str, float] = {"params": count_parameters(model), "flops": count_flops(model, input_shape)}
    out["macs"] = out["flops"] / 2
    for b in s.latency_batch_sizes:
        out[f"latency_ms_bs{b}"] = measure_latency(model, input_shape, b, s.latency_threads, s.latency_min_run_time)
    return out


def run_pruning(
    net: nn.Module,
    data: ImageSplits,
    checkpoint: str | Path | None,
    strategy,
    finetune: SGDConfig,
    settings: PruneSettings,
    run_dir: str | Path,
    results_table: str | Path | None,
    logger: NullLogger | None = None,
    identity: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    tags: list[str] | None = None,
) -> dict[str, Any]:
    """Load the backbone, prune it with `strategy` (e.g. `SGLP`), fine-tune, measure, and report one result row."""
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    logger = logger or NullLogger()
    s = settings
    timings: dict[str, float] = {}
    units_total = len(prunable_units(net))
    strategy.check(units_total)
    if checkpoint is not None:  # None: the weights the model was built with (e.g. torchvision's)
        if not Path(checkpoint).is_file():
            raise CheckpointError(
                f"no backbone checkpoint at {checkpoint}. Fix: train one with `python run.py mode=pretrain "
                f"model=<model> dataset=<dataset>`, run with `pretrain_if_missing=true`, or set `checkpoint=<path>`."
            )
        load_weights(net, checkpoint)
    to_memory_format(net.to(resolve_device(s.device)), True)
    torch.manual_seed(s.seed)
    logger.start(run_dir.name, dict(config or {}), run_dir, tags)

    def test_acc(model: nn.Module, desc: str) -> float:
        return evaluate(model, data.test_batches(s.eval_batch_size, s.eval_max_batches), desc, s.progress)["acc"]

    with timed(timings, "seconds_eval_dense"):
        dense_acc = test_acc(net, "eval dense")
    log.info("dense test accuracy %.2f%% (%d prunable units)", dense_acc, units_total)

    calibration = SplitCalibration(data, seed=s.seed + 1)
    cka_batches = data.calib_batches(s.calib_batch_size, s.calib_batches, seed=s.seed)
    with timed(timings, "seconds_prune"):  # the method's whole cost: similarity, segmentation, search, surgery
        result = strategy(net, calibration=calibration, cka_batches=cka_batches, data=data, progress=s.progress)
    timings.update({f"seconds_{k}": v for k, v in result.seconds.items()})
    log.info(
        "segments %s; kept %s; removed %s (search space %d, %.1fs)",
        result.segments,
        result.kept,
        result.removed,
        result.search.search_space,
        result.search.seconds,
    )
    if result.similarity is not None:
        np.save(run_dir / "cka.npy", result.similarity.numpy())
        heatmap = plot_cka(result.similarity, result.segments, result.kept, run_dir / "cka_segments.png")
        logger.log_image("cka_segments", heatmap)
    widths = [unit_width(u) for _, u in prunable_units(net)]
    kept_figure = plot_kept_units(widths, result.kept, result.segments, run_dir / "kept_units.png")
    logger.log_image("kept_units", kept_figure)

    pruned = result.pruned
    with timed(timings, "seconds_eval_pruned"):
        acc_before = test_acc(pruned, "eval pruned")
    with timed(timings, "seconds_finetune"):
        acc_after = acc_before
        if finetune.epochs > 0:
            train(
                pruned,
                data,
                finetune,
                seed=s.seed,
                desc="finetune",
                progress=s.progress,
                on_epoch=lambda r: logger.log({f"finetune/{k}": v for k, v in r.items()}),
            )
            acc_after = test_acc(pruned, "eval finetuned")

    with timed(timings, "seconds_cost"):
        cost_dense, cost_pruned = _cost(net, data.input_shape, s), _cost(pruned, data.input_shape, s)

    row: dict[str, Any] = dict(identity or {})
    row.update(
        {
            **strategy.describe(),
            "k": len(result.segments),
            "segments": result.segments,
            "kept": result.kept,
            "removed": result.removed,
            "units_total": units_total,
            "units_kept": len(result.kept),
            "units_kept_target": units_kept_target(strategy, units_total),
            "calib_batch_size": s.calib_batch_size,
            "calib_batches": s.calib_batches,
            "dense_acc": dense_acc,
            "pruned_acc_before_ft": acc_before,
            "pruned_acc": acc_after,
            "finetune_epochs": finetune.epochs,
            "finetune_max_steps_per_epoch": finetune.max_steps_per_epoch,
            "flops_dense": cost_dense["flops"],
            "flops_pruned": cost_pruned["flops"],
            "macs_dense": cost_dense["macs"],
            "macs_pruned": cost_pruned["macs"],
            "flops_reduction_pct": reduction_pct(cost_dense["flops"], cost_pruned["flops"]),
            "macs_reduction_pct": reduction_pct(cost_dense["macs"], cost_pruned["macs"]),
            "params_dense": cost_dense["params"],
            "params_pruned": cost_pruned["params"],
            "params_reduction_pct": reduction_pct(cost_dense["params"], cost_pruned["params"]),
        }
    )
    for b in s.latency_batch_sizes:
        d, p = cost_dense[f"latency_ms_bs{b}"], cost_pruned[f"latency_ms_bs{b}"]
        row.update(
            {
                f"latency_ms_dense_bs{b}": d,
                f"latency_ms_pruned_bs{b}": p,
                f"latency_reduction_pct_bs{b}": reduction_pct(d, p),
            }
        )
    row.update(
        {
            "search_space": result.search.search_space,
            "search_space_every_subset": every_subset_space(result.segments),
            "search_evaluated": result.search.evaluated,
            "search_seconds": result.search.seconds,
            **result.extra,
            **timings,
            "seconds_total": time.perf_counter() - t_start,
            "git_commit": git_commit(),
            "run_dir": str(run_dir),
        }
    )

    if s.save_pruned_model:
        save_checkpoint(
            run_dir / "pruned_model.pt",
            pruned,
            removed=result.removed,
            units_total=units_total,
            kept=result.kept,
            pruned_acc=acc_after,
        )
    scores = {"choices": [asdict(c) for c in result.search.choices], "candidates": result.search.scores}
    (run_dir / "search_scores.json").write_text(json.dumps(scores, indent=1))
    if s.save_pruned_model:
        logger.log_artifact(run_dir / "pruned_model.pt", "pruned_model")
    publish_row(row, run_dir, results_table, logger)
    return row
