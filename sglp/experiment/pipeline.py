"""The jobs: one prune job for every kind of model (`run_pruning`), pretraining (`run_pretraining`) and the
evaluation of a saved pruned model (`run_evaluation`).

A job takes a `Task` (sglp.kinds.base: what a kind of model measures and how it recovers) and, to prune, a `Strategy`
(sglp.methods.strategy). `run.py` builds both from the Hydra config; nothing here reads a config.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sglp.core import validation
from sglp.core.device import is_main
from sglp.core.errors import InvalidArgument
from sglp.core.surgery import remove_layers
from sglp.core.units import prunable_units, unit_width
from sglp.experiment.dense_cache import DenseCache, NoCache
from sglp.experiment.plots import plot_cka, plot_kept_units
from sglp.experiment.report import NullLogger, git_commit, portable_path, provenance, publish_row
from sglp.kinds.base import Task
from sglp.methods.controls import LABELS, control_kept
from sglp.methods.search_journal import SearchJournal
from sglp.methods.strategy import Strategy, every_subset_space, timed

log = logging.getLogger(__name__)


@dataclass
class JobSettings:
    """What every prune job shares: the calibration batches of the similarity stage, the seed, what is saved."""

    calib_batch_size: int = 128
    calib_batches: int = 2
    seed: int = 0
    save_pruned_model: bool = True
    progress: bool = True
    unique_rows: bool = False  # skip_existing: one row per config_key in the results table, even for racing jobs
    finetune_budgets: tuple[int, ...] = ()  # extra recovery budgets (steps), each from the same pruned model
    search_journal: str | None = None  # a file: the search's scored candidates, so a killed job resumes its search
    keep_dense: bool = False  # the dense model is needed after the job (matched controls): never prune it in place

    def __post_init__(self) -> None:
        validation.integer("calibration.batch_size", self.calib_batch_size)
        validation.integer("calibration.num_batches", self.calib_batches)
        for steps in self.finetune_budgets:
            validation.integer("finetune_budgets", steps)


def run_pruning(
    model: nn.Module,
    task: Task,
    strategy: Strategy,
    settings: JobSettings,
    run_dir: str | Path,
    results_table: str | Path | None,
    logger: NullLogger | None = None,
    identity: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    tags: list[str] | None = None,
    dense_cache: DenseCache | None = None,
) -> dict[str, Any]:
    """Measure the trained `model`, prune it with `strategy`, fine-tune, measure again; write and return one row.

    `dense_cache`: the dense model's test metrics and cost are read from it when a run of the same weights and
    settings measured them before (row column `dense_cached`). `settings.finetune_budgets`: besides the recipe's own
    fine-tuning, a copy of the pruned model is fine-tuned for each budget of steps (row: `<metric>_ft<steps>`)."""
    t_start, start = time.perf_counter(), provenance("start")
    commit = git_commit()  # the code this run starts with
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    logger, s, timings = logger or NullLogger(), settings, {}
    units_total = len(prunable_units(model))
    strategy.check(units_total)
    strategy.check_task(task)
    if s.finetune_budgets and not task.finetunes:
        raise InvalidArgument(f"finetune_budgets={list(s.finetune_budgets)} with no fine-tuning recipe: choose a "
                              "finetune config, or drop finetune_budgets")  # fmt: skip
    torch.manual_seed(s.seed)
    logger.start(run_dir.name, dict(config or {}), run_dir, tags)
    task.prepare(run_dir, s.seed)

    wanted = dense_cache is not None or s.search_journal
    digest = task.weights_digest() if wanted else None  # hashing the weights only for a cache or a journal
    cache = dense_cache if dense_cache is not None and digest is not None else NoCache()
    journal = None
    if s.search_journal and digest is not None:
        journal = SearchJournal(s.search_journal, {"config_key": (identity or {}).get("config_key"), "weights": digest})
    elif s.search_journal:
        log.warning("search_journal: this task's weights have no digest to key a journal by; searching without one")
    metrics: dict[str, Any] = {}
    with timed(timings, "seconds_eval_dense"):
        dense_metrics, from_cache = cache.get(digest, "evaluate", lambda: task.evaluate(model, "dense"))
        metrics.update(dense_metrics)
    log.info("dense: %s (%d prunable units)", metrics, units_total)
    with timed(timings, "seconds_cost"):  # the dense model's cost first: it may be pruned in place below
        dense_cost = cache.get(digest, "cost", lambda: task.measure_cost(model))
    widths = [unit_width(u) for _, u in prunable_units(model)]

    calibration = task.calibration(seed=s.seed + 1)
    cka_batches = task.cka_batches(s.calib_batch_size, s.calib_batches, seed=s.seed)
    inplace = task.surgery_in_place and not s.keep_dense
    with timed(timings, "seconds_prune"):  # the method's whole cost: similarity, segmentation, search, surgery
        result = strategy(model, calibration=calibration, cka_batches=cka_batches, data=task.data,
                          progress=s.progress, journal=journal, inplace=inplace, retrain=task.retrain)  # fmt: skip
    # nothing below reads `model`: in place it is `result.pruned` itself (one copy of the weights)
    timings.update({f"seconds_{k}": v for k, v in result.seconds.items()})
    log.info("segments %s; kept %s; removed %s (search space %d, %.1fs)", result.segments, result.kept,
             result.removed, result.search.search_space, result.search.seconds)  # fmt: skip
    if result.similarity is not None:
        np.save(run_dir / "cka.npy", result.similarity.numpy())
        logger.log_image("cka_segments", plot_cka(result.similarity, result.segments, result.kept,
                                                  run_dir / "cka_segments.png"))  # fmt: skip
    logger.log_image("kept_units", plot_kept_units(widths, result.kept, result.segments, run_dir / "kept_units.png"))

    recovered, pruned = recover_and_measure(dense_cost, result.pruned, task, s, logger, timings)
    metrics.update(recovered.pop("metrics"))
    cost_cached = recovered.pop("cost_cached")

    row: dict[str, Any] = dict(identity or {})
    row.update({**strategy.describe(result), "k": len(result.segments), "segments": result.segments,
                "kept": result.kept, "removed": result.removed, "units_total": units_total,
                "units_kept": len(result.kept), "units_kept_target": strategy.units_kept_target(units_total),
                "calib_batch_size": s.calib_batch_size, "calib_batches": s.calib_batches,
                "dense_cached": from_cache and cost_cached})  # fmt: skip
    row.update({**metrics, **recovered})
    row.update({"search_space": result.search.search_space,
                "search_space_every_subset": every_subset_space(result.segments),
                "search_evaluated": result.search.evaluated, "search_resumed": result.search.resumed,
                "search_seconds": result.search.seconds,
                **result.extra, **timings, "seconds_total": time.perf_counter() - t_start,
                "git_commit": commit, "run_dir": portable_path(run_dir), **start, **provenance("end")})  # fmt: skip

    if s.save_pruned_model:
        accuracy = {k: v for k, v in metrics.items() if k.startswith("pruned_acc")}
        saved = task.save(pruned, run_dir, removed=result.removed, units_total=units_total, kept=result.kept,
                          **result.save_meta, **accuracy)  # fmt: skip
        logger.log_artifact(saved, "pruned_model")
    scores = {"choices": [asdict(c) for c in result.search.choices], "candidates": result.search.scores}
    (run_dir / "search_scores.json").write_text(json.dumps(scores, indent=1))
    publish_row(row, run_dir, results_table, logger, unique=s.unique_rows)
    return row


def recover_and_measure(
    dense_cost: tuple[dict[str, Any], bool], pruned: nn.Module, task: Task, s: JobSettings, logger: NullLogger,
    timings: dict[str, float],
) -> tuple[dict[str, Any], nn.Module]:  # fmt: skip
    """Evaluate `pruned` before fine-tuning, fine-tune a copy for each extra budget, then itself with the recipe,
    and measure its cost against the dense model's (`dense_cost`: (task.measure_cost of it, read from the dense
    cache)) -> ({"metrics": {...}, "cost_cached": ..., **finetuning, **cost}, tuned model). Stage times go to
    `timings`."""
    metrics: dict[str, Any] = {}
    with timed(timings, "seconds_eval_pruned"):
        before = task.evaluate(pruned, "pruned_before_ft")
    metrics.update(before)
    with timed(timings, "seconds_finetune_budgets"):
        for steps in s.finetune_budgets:  # each from the same pruned weights (the recipe's run comes last)
            tuned, _ = task.finetune(copy.deepcopy(pruned), s.seed, NullLogger(), steps=steps)
            metrics.update({f"{k}_ft{steps}": v for k, v in task.evaluate(tuned, "pruned").items()})
            del tuned
    with timed(timings, "seconds_finetune"):
        pruned, finetuning = task.finetune(pruned, s.seed, logger)
        if task.finetunes:
            metrics.update(task.evaluate(pruned, "pruned"))
        else:  # no recovery: the pruned model's numbers are those before fine-tuning
            metrics.update({k.replace("_before_ft", ""): v for k, v in before.items()})
    dense, cached = dense_cost
    with timed(timings, "seconds_cost"):
        cost = task.compare_cost(dense, task.measure_cost(pruned))
    return {"metrics": metrics, "cost_cached": cached, **finetuning, **cost}, pruned


def control_key(config_key: str, control: str) -> str:
    """The config_key of a matched control's row: its method's key and the control's name."""
    return f"{config_key}+{control}"


def run_matched_controls(
    model: nn.Module,
    task: Task,
    method_row: Mapping[str, Any],
    controls: tuple[str, ...],
    settings: JobSettings,
    run_dir: str | Path,
    results_table: str | Path | None,
    dense_cache: DenseCache | None = None,
    done: set[str] = frozenset(),
) -> list[dict[str, Any]]:
    """The matched controls (sglp.methods.controls) of a finished prune job, from its row: the same segments and
    seed, the
    units drawn at random, then the same recovery and measurements. One row each, keyed `<config_key>+<control>`
    and labelled `<method> · <control>`; `done`: control keys that already have a row (skipped). A method with a
    single segment gets no `in_segments` control (it equals `same_depth`)."""
    s, rows = settings, []
    segments, kept = _as_list(method_row["segments"]), _as_list(method_row["kept"])
    digest = task.weights_digest() if dense_cache is not None else None
    cache = dense_cache if dense_cache is not None and digest is not None else NoCache()
    dense, _ = cache.get(digest, "evaluate", lambda: task.evaluate(model, "dense"))
    dense_cost = cache.get(digest, "cost", lambda: task.measure_cost(model))  # once: every control shares it
    for control in controls:
        key = control_key(str(method_row["config_key"]), control)
        if key in done or (control == "in_segments" and len(segments) < 2):
            continue
        t_start, start, timings = time.perf_counter(), provenance("start"), {}
        torch.manual_seed(s.seed)
        kept_c = control_kept(control, segments, kept, s.seed)
        kept_set = set(kept_c)
        removed = [u for seg in segments for u in seg if u not in kept_set]
        log.info("matched control %s of %s: kept %s", control, method_row["method"], kept_c)
        recovered, _ = recover_and_measure(dense_cost, remove_layers(model, removed), task, s, NullLogger(), timings)
        metrics, cached = recovered.pop("metrics"), recovered.pop("cost_cached")
        row = {k: method_row[k] for k in IDENTITY if k in method_row}
        row.update({"method": f"{method_row['method']} · {LABELS[control]}", "config_key": key,
                    "control": control, "control_of": method_row["config_key"],
                    "control_of_method": method_row["method"], "k": len(segments), "segments": segments,
                    "kept": kept_c, "removed": removed, "units_total": int(method_row["units_total"]),
                    "units_kept": len(kept_c), "units_kept_target": len(kept),
                    "calib_batch_size": s.calib_batch_size, "calib_batches": s.calib_batches,
                    "dense_cached": cached, **dense, **metrics, **recovered, **timings,
                    "seconds_total": time.perf_counter() - t_start, "git_commit": git_commit(),
                    "run_dir": portable_path(run_dir), **start, **provenance("end")})  # fmt: skip
        publish_row(row, Path(run_dir) / f"control_{control}", results_table, NullLogger(), unique=s.unique_rows)
        rows.append(row)
    return rows


# A method row's entries that its controls share (who, on what, which seed)
IDENTITY = ("experiment", "model", "dataset", "seed", "options", "overrides")


def _as_list(value: Any) -> list:
    """A row's list entry, as written (a list) or as read back from CSV (JSON text)."""
    return json.loads(value) if isinstance(value, str) else list(value)


def run_pretraining(
    task: Task, recipe: Any, seed: int, resume: bool, overwrite: bool, name: str, run_dir: str | Path,
    logger: NullLogger | None = None, config: Mapping[str, Any] | None = None, tags: list[str] | None = None,
    config_yaml: str = "", command: str = "", log_file: str | Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train the task's model from scratch and save it where prune runs load it; the run's log is copied there."""
    logger = logger or NullLogger()
    torch.manual_seed(seed)
    logger.start(name, dict(config or {}), run_dir, tags)
    meta = task.pretrain(recipe, seed=seed, resume=resume, overwrite=overwrite, logger=logger,
                         config_yaml=config_yaml, command=command)  # fmt: skip
    logger.finish(meta)
    if log_file and Path(log_file).exists() and task.weights_dir is not None and is_main():
        (task.weights_dir / "pretrain.log").write_bytes(Path(log_file).read_bytes())
    return meta


def run_evaluation(task: Task, pruned_model: str | Path) -> dict[str, Any]:
    """The test metrics of a pruned model saved by a prune run (same model and dataset options)."""
    return task.evaluate_saved(pruned_model)
