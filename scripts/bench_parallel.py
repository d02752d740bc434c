"""Benchmark of parallel jobs sharing the CPU: ResNet-56 forward+backward steps (batch 64, Fashion-MNIST shapes),
one process alone vs two at once with every core each (the old `threads: null`) vs two at once with the default
share (`sglp.core.device.default_threads`: cores // jobs each, what `hydra/launcher=parallel` now gets).

    python scripts/bench_parallel.py --out results/bench_parallel.md

Run it on an otherwise idle machine: the page records the load average before and after.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from pathlib import Path

from sglp.core.device import default_threads
from sglp.core.provenance import provenance, where_it_ran
from sglp.experiment.report import emit_report


def steps_ms(threads: int, steps: int, start: mp.Event | None = None) -> float:
    """Median ms per fwd+bwd step of ResNet-56 at batch 64 on (1, 28, 28) inputs with `threads` torch threads."""
    import torch

    from sglp.kinds.classification.models.resnet_cifar import resnet56

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = resnet56(num_classes=10, in_channels=1)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(2):  # warm-up
        loss_fn(model(x), y).backward()
    if start is not None:
        start.wait()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        loss_fn(model(x), y).backward()
        times.append(1000 * (time.perf_counter() - t))
    return sorted(times)[len(times) // 2]


def _worker(threads: int, steps: int, start, out) -> None:
    out.put(steps_ms(threads, steps, start))


def two_at_once(threads: int, steps: int) -> list[float]:
    """Two processes stepping at the same time (they start together): each one's median ms per step."""
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(threads, steps, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    time.sleep(20)  # both warmed up
    start.set()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return sorted(results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    start = provenance("start")
    share = default_threads(None, 2, cores)
    alone = steps_ms(cores, args.steps)
    oversubscribed = two_at_once(cores, args.steps)
    shared = two_at_once(share, args.steps)
    end = provenance("end")
    rows = [
        ("one job alone", cores, f"{alone:.0f}", f"{1000 / alone:.2f}"),
        ("two jobs, every core each (old default)", cores, " / ".join(f"{v:.0f}" for v in oversubscribed),
         f"{sum(1000 / v for v in oversubscribed):.2f}"),
        ("two jobs, cores // 2 each (default now)", share, " / ".join(f"{v:.0f}" for v in shared),
         f"{sum(1000 / v for v in shared):.2f}"),
    ]  # fmt: skip
    lines = [
        "# Parallel jobs sharing the CPU",
        "",
        f"Made by `python scripts/bench_parallel.py --out {args.out}`. ResNet-56 forward+backward at batch 64 on "
        f"1 x 28 x 28 inputs, median of {args.steps} steps per process. {where_it_ran(start, end)}",
        "",
        "| jobs | torch threads each | ms per step (each job) | steps per second (all jobs) |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
    ]
    emit_report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
