"""`make gpu-check`: the GPU code paths in a few minutes, each timed; on a machine without CUDA, the plan only.

python scripts/gpu_check.py [--out FILE]

1. the demo (ResNet-56 / Fashion-MNIST, committed backbone) on CUDA with the DALI loader, bf16 autocast and
   channels_last fine-tuning;
2. a tiny LLM prune on CUDA (the committed tiny LLaMA: token CKA, perplexity search, LoRA in bf16, local task);
3. with two or more GPUs: the demo under torchrun (DistributedDataParallel over NCCL), rank 0 writing the row.

Each step is a real run.py job (rows to a scratch table, never results/); the summary gives its exit code, wall
time and the stage times of its row. Exit 1 if a step failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["logger=none", "progress=false", "save_pruned_model=false"]
DEMO = [
    "name=gpu_check",
    "device=auto",
    "dataset.splits.loader=dali",
    "finetune.amp=bf16",
    "finetune.channels_last=true",
]
LLM = [
    "model=tiny_llama", "dataset=kjv", "similarity=linear_cka_tokens", "scorer=perplexity", "finetune=lora",
    "tasks=local", "name=gpu_check_llm", "device=auto", "search.keep=9", "segmenter.k=3", "calibration.batch_size=8",
    "calibration.num_batches=4", "finetune.steps=50", "finetune.bf16=true", "eval_batch_size=16",
    "latency.batch_sizes=[1,8]",
]  # fmt: skip


def steps(gpus: int, scratch: Path) -> list[tuple[str, list[str]]]:
    py = [sys.executable, "run.py"]
    plan = [
        ("demo: CUDA, DALI, bf16, channels_last", py + DEMO + COMMON),
        ("tiny LLM prune: CUDA, bf16 LoRA", py + LLM + COMMON),
    ]
    if gpus >= 2:
        n = min(gpus, 4)
        torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", "run.py"]
        plan.append(
            (f"demo under torchrun: DDP over NCCL, {n} GPUs", torchrun + DEMO + ["name=gpu_check_ddp"] + COMMON)
        )
    return [(name, [*cmd, f"results_table={scratch}/rows.csv", f"hydra.run.dir={scratch}/{i}"])
            for i, (name, cmd) in enumerate(plan)]  # fmt: skip


def stage_times(run_dir: Path) -> str:
    row_file = run_dir / "row.json"
    if not row_file.exists():
        return "no row"
    row = json.loads(row_file.read_text())
    keys = [k for k in row if k.startswith("seconds_") and k != "seconds_total"]
    return ", ".join(f"{k.removeprefix('seconds_')} {row[k]:.1f}s" for k in keys if isinstance(row[k], int | float))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="also write the summary (Markdown) here")
    ap.add_argument("--preflight", action="store_true", help="pre-flight each step (dry_run=true) on any machine")
    args = ap.parse_args()
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    scratch = Path(tempfile.mkdtemp(prefix="sglp-gpu-check-"))
    plan = steps(gpus, scratch)
    if args.preflight:  # every step's config composes, builds and passes its checks (the GPU itself is not needed)
        bad = [name for name, cmd in plan if subprocess.run([*cmd, "dry_run=true"], cwd=ROOT).returncode]
        print(
            f"gpu-check pre-flight: {len(plan) - len(bad)} of {len(plan)} steps pass"
            + (f"; failed: {bad}" if bad else "")
        )
        return 1 if bad else 0
    if not gpus:
        print("gpu-check: no CUDA device here; on a GPU machine it would run:")
        for name, cmd in plan:
            print(f"  - {name}:\n      {' '.join(cmd)}")
        print("(with two or more GPUs, also the demo under torchrun over NCCL)")
        return 0
    lines = [
        f"# gpu-check on {torch.cuda.get_device_name(0)} x {gpus} (torch {torch.__version__})",
        "",
        "| step | exit | wall (s) | stages |",
        "|---|---|---|---|",
    ]
    failed = False
    for i, (name, cmd) in enumerate(plan):
        print(f"gpu-check: {name} ...", flush=True)
        t = time.perf_counter()
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t
        failed |= res.returncode != 0
        if res.returncode:
            print(res.stderr[-3000:], file=sys.stderr)
        lines.append(f"| {name} | {res.returncode} | {wall:.0f} | {stage_times(scratch / str(i))} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
