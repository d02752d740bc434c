"""Evaluation of decoder LLMs with lm-evaluation-harness, in-process, on hub tasks or the local ones shipped in
sglp/kinds/causal_lm/tasks (each task a YAML file). Each task's metric (acc or acc_norm) is fixed by the caller's
preset."""

from __future__ import annotations

import functools
import json
import os
import random
import re
from collections.abc import Mapping
from pathlib import Path

from sglp.core.errors import DataNotFoundError, InvalidArgument

TASKS_DIR = Path(__file__).parent / "tasks"


def write_continuation_items(
    text: str, path: str | Path, num_items: int = 200, num_choices: int = 4, min_words: int = 8, seed: int = 0
) -> Path:
    """Multiple-choice items from held-out lines of `text`: the first half of a line's words is the context, its
    second half the right ending, and the second halves of `num_choices - 1` other random lines the distractors.
    Written as JSONL {"context", "choices", "label"} (label = index of the right ending)."""
    lines = [ln.split() for ln in text.splitlines()]
    lines = [w for w in lines if len(w) >= min_words]
    if len(lines) < num_choices:
        raise InvalidArgument(f"only {len(lines)} lines of >= {min_words} words: too few for {num_choices} choices")
    rng = random.Random(seed)
    picks = rng.sample(range(len(lines)), min(num_items, len(lines)))
    items = []
    for i in picks:
        half = len(lines[i]) // 2
        others = rng.sample([j for j in range(len(lines)) if j != i], num_choices - 1)
        endings = [" ".join(lines[i][half:])] + [" ".join(lines[j][len(lines[j]) // 2 :]) for j in others]
        order = list(range(num_choices))
        rng.shuffle(order)
        items.append(
            {"context": " ".join(lines[i][:half]), "choices": [endings[k] for k in order], "label": order.index(0)}
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    return path


@functools.lru_cache(maxsize=4)
def task_manager(metadata: tuple[tuple[str, object], ...]):
    """lm-eval's task index with our local tasks (building it scans every task yaml: seconds), one per metadata."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), metadata=dict(metadata))


def hub_reachable(host: str = "huggingface.co") -> bool:
    """Whether the hub's name resolves (it fails at once on a machine without DNS; a blocked route still resolves)."""
    import socket

    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def use_cached_datasets_only() -> None:
    """Hugging Face datasets and hub from their caches only (no request, so no retries with back-off: about 25 s per
    missing dataset otherwise). Set in the libraries too: they read the variables once, at import."""
    import datasets.config
    import huggingface_hub.constants

    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True


def local_task_names() -> set[str]:
    """The tasks defined in TASKS_DIR (their yaml's `task:`), which need no hub."""
    names = set()
    for path in TASKS_DIR.glob("*.yaml"):
        names.update(m.group(1) for m in re.finditer(r"^task:\s*(\S+)", path.read_text(), flags=re.M))
    return names


def datasets_cached() -> bool:
    """Whether the Hugging Face datasets cache holds anything (offline, a hub task can only come from there)."""
    import datasets.config

    cache = Path(datasets.config.HF_DATASETS_CACHE)
    return cache.is_dir() and any(not p.name.startswith(".") and p.suffix != ".lock" for p in cache.iterdir())


def tasks_not_loadable(metrics: Mapping[str, str], reason: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"lm-eval tasks {sorted(metrics)} cannot be loaded ({reason}). Hub tasks need their datasets from the "
        "Hugging Face hub once (then the datasets cache serves them offline); without internet use tasks=local"
    )


def check_tasks(metrics: Mapping[str, str], metadata: Mapping[str, object] | None = None) -> None:
    """Load every task's dataset now (before any measurement): a hub task that cannot be fetched is one clear
    error at the start of a run, not an exception after the dense evaluation. Without a route to the hub, only
    the datasets cache is asked, and with an empty cache a hub task is refused before lm-eval's task index is
    built (seconds)."""
    from lm_eval.tasks import get_task_dict

    if not hub_reachable():
        use_cached_datasets_only()
        if set(metrics) - local_task_names() and not datasets_cached():
            raise tasks_not_loadable(metrics, "no route to the hub and an empty datasets cache")
    manager = task_manager(tuple(sorted((metadata or {}).items())))
    try:
        get_task_dict(list(metrics), task_manager=manager)
    except Exception as e:  # noqa: BLE001 - datasets / hub / lm-eval raise many types for "not available"
        first = (str(e).splitlines() or [""])[0][:200]
        raise tasks_not_loadable(metrics, f"{type(e).__name__}: {first}") from None


def evaluate_tasks(
    model,
    tokenizer,
    metrics: Mapping[str, str],
    metadata: Mapping[str, object] | None = None,
    batch_size: int = 8,
    limit: int | None = None,
) -> dict[str, float]:
    """Accuracy (%) per task with lm-eval's `simple_evaluate` on an in-memory model: `metrics` maps each task
    name to the metric reported for it (e.g. {"arc_challenge": "acc_norm", "sglp_continuation": "acc"})."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    manager = task_manager(tuple(sorted((metadata or {}).items())))
    out = lm_eval.simple_evaluate(model=lm, tasks=list(metrics), task_manager=manager, limit=limit, log_samples=False)
    scores = {}
    for task, metric in metrics.items():
        values = out["results"].get(task, {})
        key = next((k for k in values if k.split(",")[0] == metric), None)
        if key is None:
            raise InvalidArgument(f"lm-eval task {task} reported no {metric!r} (it has {sorted(values)})")
        scores[task] = 100.0 * float(values[key])
    return scores
