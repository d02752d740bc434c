"""Cost of a network: parameters, FLOPs / MACs, and measured CPU latency.

FLOPs vs MACs: `torch.utils.flop_counter` counts FLOPs, 2 per multiply-add. Most pruning
papers' "FLOPs" are MACs (multiply-adds). We report both, labelled; reduction percentages are
the same for either since the factor is exactly 2 for conv/linear layers.
"""

from __future__ import annotations

import os
import statistics

import torch
from torch import nn
from torch.utils.benchmark import Timer
from torch.utils.flop_counter import FlopCounterMode

from sglp.core.device import model_input
from sglp.core.modes import eval_mode


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> int:
    """FLOPs of one forward pass on a single example of shape `input_shape` ((C, H, W); (T,) token ids with
    dtype=torch.long).

    Counts matmul/conv (2 FLOPs per multiply-add); element-wise ops (BN, ReLU, adds) are not counted.
    """
    counter = FlopCounterMode(display=False)
    with eval_mode(model), counter:
        model(model_input(torch.zeros(1, *input_shape, dtype=dtype), model))
    return int(counter.get_total_flops())


@torch.no_grad()
def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch_size: int,
    threads: int | None = None,
    min_run_time: float = 1.0,
    warmup: int = 3,
) -> float:
    """Median wall-clock milliseconds of one forward pass of a batch, on the model's device.

    `torch.utils.benchmark.Timer` runs on one thread unless told otherwise: we set `threads`
    explicitly (default: all cores), warm up, then take the median of `blocked_autorange`.
    """
    threads = threads or os.cpu_count() or 1
    x = model_input(torch.randn(batch_size, *input_shape), model)
    with eval_mode(model):
        for _ in range(warmup):
            model(x)
        timer = Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
        median = timer.blocked_autorange(min_run_time=min_run_time).median
    return 1000.0 * median


def reduction_pct(dense: float, pruned: float) -> float:
    """Reduction relative to the dense network, in percent (as in the papers' tables)."""
    return 100.0 * (dense - pruned) / dense if dense else 0.0


def ranks(values: list[float]) -> list[float]:
    """Ranks from 1, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for t in range(i, j + 1):
            r[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else float("nan")
