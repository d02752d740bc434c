"""Where and how a run happened, recorded by the code into its row: the commit it ran, the machine (CPU model, cores,
GPU), the torch threads, the UTC times and the load average at start and end."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

# What a run writes into the repository (result tables, reports, figures) and prose: a change there does not change
# what a run computes, so it does not make the recorded commit "dirty" (a sweep appending to a tracked
# results/rows/*.csv used to mark every row after its first one dirty).
NOT_CODE = (":(top,exclude)results", ":(top,exclude)*.md")


def git_commit(root: str | Path = ".") -> str:
    """The commit of the code this process runs, with '-dirty' if tracked files other than results/ and Markdown
    differ from it, or 'unknown' outside git. Read once per process and repository: a sweep that outlives a commit
    keeps recording the code it imported."""
    return _git_commit(str(Path(root).resolve()))


@functools.cache
def _git_commit(root: str) -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", *NOT_CODE],
            cwd=root, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    """The processor's model name (Linux /proc/cpuinfo; else platform.processor()), e.g. 'AMD EPYC 7B13'."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(stage: str) -> dict[str, Any]:
    """Where and when a run's stage happened, for its row: UTC time, the machine (CPU model, cores, GPU), the
    torch threads and the 1-minute load average (how busy the machine was: timings are comparable only at equal
    load). `stage` prefixes the time and load keys: provenance("start") -> start_utc, load_start, ..."""
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out: dict[str, Any] = {f"{stage}_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), f"load_{stage}": load}
    if stage == "start":
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        out.update({"cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "gpu": gpu,
                    "torch_version": torch.__version__})  # fmt: skip
    return out


def where_it_ran(start: dict[str, Any], end: dict[str, Any]) -> str:
    """One sentence for a page from provenance("start") and provenance("end"): the machine, torch, the threads, the
    UTC window and the load average at both ends (a page's timings compare only at equal load)."""
    load = "/".join("–" if v is None else f"{v:.2f}" for v in (start.get("load_start"), end.get("load_end")))
    return (f"Where it ran: {start['cpu']}, {start['cpu_count']} cores, {start.get('gpu') or 'no GPU'}, torch "
            f"{start.get('torch_version', '?')} with {start['threads']} threads; {start['start_utc']} to "
            f"{end['end_utc']}; 1-minute load average {load} at the start / end.")  # fmt: skip
