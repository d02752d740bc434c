"""The LLM job around any pruning strategy: dense metrics -> prune -> LoRA recovery -> metrics -> one result row.

Metrics: perplexity on the test split; accuracy (%) on lm-eval tasks (hub tasks where available, plus the local
continuation task built from the test text); parameters; throughput in tokens/s of a forward pass.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.benchmark import Timer

from sglp.device import model_device
from sglp.llm.evaluation import evaluate_tasks, write_continuation_items
from sglp.llm.lora import LoRAConfig, lora_finetune
from sglp.llm.perplexity import perplexity
from sglp.metrics import count_parameters, reduction_pct
from sglp.modes import eval_mode
from sglp.pipeline import every_subset_space, timed, units_kept_target
from sglp.plots import plot_cka, plot_kept_units
from sglp.report import NullLogger, git_commit, publish_row
from sglp.scorers.base import SplitCalibration
from sglp.units import prunable_units, unit_width

log = logging.getLogger(__name__)
LOCAL_TASK = "sglp_continuation"


@dataclass
class LLMSettings:
    calib_batch_size: int = 8
    calib_batches: int = 4
    eval_batch_size: int = 8
    eval_max_batches: int | None = None
    tasks: dict[str, str] = field(default_factory=lambda: {LOCAL_TASK: "acc"})  # task -> reported metric
    task_limit: int | None = None
    local_items: int = 200
    latency_batch_sizes: list[int] = field(default_factory=lambda: [1, 8])
    latency_min_run_time: float = 1.0
    save_pruned_model: bool = True
    seed: int = 0
    progress: bool = True


@torch.inference_mode()
def tokens_per_second(model: nn.Module, batch_size: int, seq_len: int, vocab_size: int, min_run_time: float) -> float:
    """Forward-pass throughput (tokens/s): median time of a batch of random token ids after warm-up."""
    ids = torch.randint(0, vocab_size, (batch_size, seq_len), device=model_device(model))
    with eval_mode(model):
        for _ in range(2):
            model(input_ids=ids, use_cache=False)
        t = Timer("model(input_ids=ids, use_cache=False)", globals={"model": model, "ids": ids},
                  num_threads=torch.get_num_threads())  # fmt: skip
        return batch_size * seq_len / t.blocked_autorange(min_run_time=min_run_time).median


def run_llm_pruning(
    model: nn.Module, tokenizer, data, strategy, finetune: LoRAConfig | None, settings: LLMSettings,
    run_dir: str | Path, results_table: str | Path | None, logger: NullLogger | None = None,
    identity: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None, tags: list[str] | None = None,
    finetune_data=None,
) -> dict[str, Any]:  # fmt: skip
    """Dense metrics -> `strategy` -> LoRA recovery on `finetune_data` (default: `data`'s training split) -> metrics
    -> one result row."""
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    logger, s, timings = logger or NullLogger(), settings, {}
    units_total = len(prunable_units(model))
    strategy.check(units_total)
    logger.start(run_dir.name, dict(config or {}), run_dir, tags)
    torch.manual_seed(s.seed)
    items = write_continuation_items(
        tokenizer.decode(data.test_x.reshape(-1).tolist()), run_dir / "continuation_items.jsonl", s.local_items,
        seed=s.seed,
    )  # fmt: skip

    def measure(m: nn.Module, tag: str) -> dict[str, float]:
        out = {f"ppl_{tag}": perplexity(m, data.test_batches(s.eval_batch_size, s.eval_max_batches))}
        if s.tasks:
            scores = evaluate_tasks(m, tokenizer, s.tasks, {"path": str(items)}, s.eval_batch_size, s.task_limit)
            out.update({f"{t}_{tag}": v for t, v in scores.items()})
            out[f"avg_acc_{tag}"] = sum(scores.values()) / len(scores)
        log.info("%s: %s", tag, {k: round(v, 3) for k, v in out.items()})
        return out

    with timed(timings, "seconds_eval_dense"):
        row_metrics = measure(model, "dense")

    calibration = SplitCalibration(data, seed=s.seed + 1)
    cka_batches = data.calib_batches(s.calib_batch_size, s.calib_batches, seed=s.seed)
    with timed(timings, "seconds_prune"):
        result = strategy(model, calibration=calibration, cka_batches=cka_batches, data=data, progress=s.progress)
    timings.update({f"seconds_{k}": v for k, v in result.seconds.items()})
    log.info("segments %s; kept %s; removed %s", result.segments, result.kept, result.removed)
    if result.similarity is not None:
        title = "linear CKA between decoder layers"
        heatmap = plot_cka(result.similarity, result.segments, result.kept, run_dir / "cka_segments.png", title)
        logger.log_image("cka_segments", heatmap)
    widths = [unit_width(u) for _, u in prunable_units(model)]
    logger.log_image("kept_units", plot_kept_units(widths, result.kept, result.segments, run_dir / "kept_units.png"))
    pruned = result.pruned
    with timed(timings, "seconds_eval_pruned"):
        row_metrics.update(measure(pruned, "pruned_before_ft"))
    losses: list[float] = []
    with timed(timings, "seconds_finetune"):
        if finetune is not None:
            pruned, losses = lora_finetune(pruned, finetune_data or data, finetune, seed=s.seed, progress=s.progress)
    if finetune is not None:
        row_metrics.update(measure(pruned, "pruned"))
    else:  # no recovery: the pruned model's numbers are those before fine-tuning
        before = {k: v for k, v in row_metrics.items() if k.endswith("_pruned_before_ft")}
        row_metrics.update({k.replace("_pruned_before_ft", "_pruned"): v for k, v in before.items()})

    vocab = model.config.get_text_config(decoder=True).vocab_size
    row: dict[str, Any] = dict(identity or {})
    row.update({**strategy.describe(), "k": len(result.segments), "segments": result.segments, "kept": result.kept,
                "removed": result.removed, "units_total": units_total, "units_kept": len(result.kept),
                "units_kept_target": units_kept_target(strategy, units_total)})  # fmt: skip
    row.update(row_metrics)
    row.update({"lora_steps": finetune.steps if finetune else 0, "lora_final_loss": losses[-1] if losses else None})
    pd, pp = count_parameters(model), count_parameters(pruned)
    row.update({"params_dense": pd, "params_pruned": pp, "params_reduction_pct": reduction_pct(pd, pp)})
    for b in s.latency_batch_sizes:
        d = tokens_per_second(model, b, data.seq_len, vocab, s.latency_min_run_time)
        p = tokens_per_second(pruned, b, data.seq_len, vocab, s.latency_min_run_time)
        row.update({f"tokens_per_s_dense_bs{b}": d, f"tokens_per_s_pruned_bs{b}": p,
                    f"speedup_bs{b}": p / d})  # fmt: skip
    row.update({"search_space": result.search.search_space, "search_evaluated": result.search.evaluated,
                "search_space_every_subset": every_subset_space(result.segments),
                **timings, "seconds_total": time.perf_counter() - t_start, "git_commit": git_commit(),
                "run_dir": str(run_dir)})  # fmt: skip
    if s.save_pruned_model:
        pruned.save_pretrained(run_dir / "pruned_model")
        tokenizer.save_pretrained(run_dir / "pruned_model")
    (run_dir / "search_scores.json").write_text(json.dumps({"candidates": result.search.scores}, indent=1))
    publish_row(row, run_dir, results_table, logger)
    return row
