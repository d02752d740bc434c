"""The result row: one flat record per run, written as JSON + CSV, appended to a results table,
printed, and logged to Weights & Biases (offline unless configured otherwise)."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from sglp.core.loggers import NullLogger
from sglp.core.provenance import git_commit, provenance  # noqa: F401 (rows record them)


def _cell(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (list, tuple, dict)) else v


# Settings that do not change a run's result (where things are written, how it is shown).
VOLATILE_KEYS = (
    "paths",
    "progress",
    "results_table",
    "rehearse",
    "rehearsal_dir",
    "preflight",
    "logger",
    "save_pruned_model",
    "pruned_model",
    "overwrite",
    "resume",
    "pretrain_if_missing",
    "skip_existing",
    "dry_run",
    "dense_cache",
    "search_journal",
    "matched_controls",  # which controls run beside a method leaves its row as it is; each control row has its own key
)
# Keys added after rows existed: left out of the key while they hold their default, so old rows keep their keys.
LATER_KEYS = {"finetune_budgets": []}

# The papers' column names for a row's metrics (logged to W&B as `paper/<name>` beside the row's own keys).
# The papers' "FLOPs" reductions count multiply-accumulates: they map to our MACs column.
PAPER_COLUMNS = {
    "Acc. (%)": "pruned_acc",
    "FLOPs (%)": "macs_reduction_pct",
    "Params. (%)": "params_reduction_pct",
    "Search Space": "search_space",
    "Evaluation Cost (s)": "search_seconds",
    "LR bs=1 (%)": "latency_reduction_pct_bs1",
    "LR bs=8 (%)": "latency_reduction_pct_bs8",
    "LR bs=64 (%)": "latency_reduction_pct_bs64",
    "Avg Acc.": "avg_acc_pruned",
}


def paper_columns(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row's metrics that the papers' tables report, under the papers' column names."""
    return {f"paper/{name}": row[key] for name, key in PAPER_COLUMNS.items() if row.get(key) is not None}


def portable_text(text: str, root: str | Path | None) -> str:
    """`text` with the checkout's absolute path `root` written as `.` (no machine paths in committed files)."""
    if not root:
        return text
    root = str(root).rstrip("/")
    return text.replace(root + "/", "./").replace(root, ".")


def portable_path(path: str | Path) -> str:
    """`path` relative to the working directory when it lies inside it (rows hold no machine paths), else as is."""
    absolute = Path(path).resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# Where the modules a config's `_target_` names lived when run keys were first computed: a key identifies what a
# run computes, not where its classes sit, so a module that moves maps back here (committed rows and search journals
# keep their keys; tests/test_verdict_grid.py recomputes the committed keys). A module moved later adds its line.
KEY_MODULE_NAMES = {
    "sglp.core.activations": "sglp.activations",
    "sglp.core.calibration": "sglp.calibration",
    "sglp.core.checkpoint": "sglp.checkpoint",
    "sglp.core.device": "sglp.device",
    "sglp.core.errors": "sglp.errors",
    "sglp.core.loggers": "sglp.loggers",
    "sglp.core.metrics": "sglp.metrics",
    "sglp.core.modes": "sglp.modes",
    "sglp.core.provenance": "sglp.provenance",
    "sglp.core.segmentation": "sglp.segmentation",
    "sglp.core.similarity": "sglp.similarity",
    "sglp.core.stats": "sglp.stats",
    "sglp.core.surgery": "sglp.surgery",
    "sglp.core.units": "sglp.units",
    "sglp.core.validation": "sglp.validation",
    "sglp.experiment.dense_cache": "sglp.dense_cache",
    "sglp.experiment.operating_points": "sglp.operating_points",
    "sglp.experiment.pipeline": "sglp.pipeline",
    "sglp.experiment.plots": "sglp.plots",
    "sglp.experiment.preflight": "sglp.preflight",
    "sglp.experiment.rehearsal": "sglp.rehearsal",
    "sglp.experiment.report": "sglp.report",
    "sglp.experiment.resolvers": "sglp.resolvers",
    "sglp.experiment.sweep": "sglp.sweep",
    "sglp.experiment.tables": "sglp.tables",
    "sglp.experiment.verdicts": "sglp.verdicts",
    "sglp.kinds.base": "sglp.task",
    "sglp.kinds.causal_lm": "sglp.llm",
    "sglp.kinds.classification.adapters": "sglp.adapters",
    "sglp.kinds.classification.models": "sglp.models",
    "sglp.kinds.classification.pretrain": "sglp.pretrain",
    "sglp.kinds.classification.task": "sglp.classification",
    "sglp.kinds.classification.training": "sglp.training",
    "sglp.methods.channels": "sglp.channels",
    "sglp.methods.controls": "sglp.controls",
    "sglp.methods.criteria": "sglp.criteria",
    "sglp.methods.fusion": "sglp.fusion",
    "sglp.methods.scorers": "sglp.scorers",
    "sglp.methods.scorers.perplexity": "sglp.llm.perplexity",
    "sglp.methods.search": "sglp.search",
    "sglp.methods.search_journal": "sglp.search_journal",
    "sglp.methods.strategy": "sglp.strategy",
}


def key_target(target: str) -> str:
    """`target` ("package.module.Class") with a moved module's first name (KEY_MODULE_NAMES)."""
    for new in sorted(KEY_MODULE_NAMES, key=len, reverse=True):
        if target == new or target.startswith(new + "."):
            return KEY_MODULE_NAMES[new] + target[len(new) :]
    return target


def key_config(config: Any) -> Any:
    """`config` with every `_target_` named as KEY_MODULE_NAMES says (what run keys and cache keys hash)."""
    if isinstance(config, Mapping):
        return {k: key_target(v) if k == "_target_" and isinstance(v, str) else key_config(v)
                for k, v in config.items()}  # fmt: skip
    if isinstance(config, list | tuple):
        return [key_config(v) for v in config]
    return config


def config_key(config: Mapping[str, Any], root: str | None = None) -> str:
    """A short hash identifying a run by its resolved config, ignoring VOLATILE_KEYS, with `_target_`s named as
    when keys were first computed (key_config); paths under `root` count as relative, so a clone elsewhere computes
    the same key."""
    kept = {k: v for k, v in key_config(config).items() if k not in VOLATILE_KEYS}
    kept = {k: v for k, v in kept.items() if not (k in LATER_KEYS and v == LATER_KEYS[k])}
    text = json.dumps(kept, sort_keys=True, default=str)
    if root:
        text = text.replace(str(root).rstrip("/") + "/", "")
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def check_writable(
    path: str | Path, key: str = "results_table", fix: str = "results_table=outputs/runs.csv", folder: bool = False
) -> None:
    """InvalidArgument now, before any work, if `path` (a file, or with `folder` a directory) cannot be written: a
    run that computes for hours and then cannot write its output loses everything. An existing file is opened for
    appending; otherwise its folder is probed with a file of this process's own (racing jobs of one sweep check
    the same table)."""
    from sglp.core.errors import InvalidArgument

    path = Path(path)
    try:
        place = path if folder else path.parent
        place.mkdir(parents=True, exist_ok=True)
        if not folder and path.exists():
            with open(path, "a"):
                pass
        else:
            probe = place / f".{path.name}.{os.getpid()}.probe"
            probe.touch()
            probe.unlink()
    except OSError as e:
        raise InvalidArgument(
            f"{key}={path} cannot be written ({e.strerror}): choose a writable path, e.g. {fix}"
        ) from None


def find_row(table: str | Path, key: str) -> dict[str, str] | None:
    """The row of the results table with this `config_key` (as CSV strings), or None."""
    table = Path(table)
    if not table.exists():
        return None
    with FileLock(str(table) + ".lock"), open(table, newline="") as f:
        return next((r for r in csv.DictReader(f) if r.get("config_key") == key), None)


def write_row(row: Mapping[str, Any], run_dir: str | Path) -> None:
    """Write `row` as row.json and row.csv in `run_dir`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "row.json").write_text(json.dumps(row, indent=2, default=str) + "\n")
    with open(run_dir / "row.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        w.writeheader()
        w.writerow({k: _cell(v) for k, v in row.items()})


def append_row(row: Mapping[str, Any], table: str | Path, unique: bool = False) -> bool:
    """Append `row` to a CSV table shared by many runs, under a file lock; returns whether it was appended.

    Rows keep every column ever seen: a row with new keys rewrites the header (old rows get
    empty cells), so nothing already written is lost. With `unique` (skip_existing), a row whose config_key the
    table already holds is not appended: the check and the append happen under the same lock, so two identical
    jobs started together leave one row.
    """
    table = Path(table)
    table.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(table) + ".lock"):
        rows: list[dict[str, Any]] = []
        fields: list[str] = []
        if table.exists() and table.stat().st_size:
            with open(table, newline="") as f:
                reader = csv.DictReader(f)
                fields = list(reader.fieldnames or [])
                rows = list(reader)
        if unique and any(r.get("config_key") == str(row.get("config_key")) for r in rows):
            return False
        fields += [k for k in row if k not in fields]  # new columns: the header grows, old rows get empty cells
        # The whole table goes to a temporary file, synced, then renamed over the old one: a writer killed at any
        # moment leaves either the old table or the new one, never a torn row.
        tmp = table.with_name(f".{table.name}.{os.getpid()}.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
            w.writerow({k: _cell(v) for k, v in row.items()})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, table)
    return True


def format_row(row: Mapping[str, Any]) -> str:
    """The row as a two-column text table for the terminal."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sglp result", show_header=True)
    table.add_column("key", style="bold")
    table.add_column("value")
    for k, v in row.items():
        if isinstance(v, float):
            v = f"{v:.4g}" if math.isfinite(v) and abs(v) < 1e6 else f"{v:.4e}"
        table.add_row(k, str(v))
    console = Console(width=120, record=True, force_terminal=False)
    with console.capture() as cap:
        console.print(table)
    return cap.get()


class WandbLogger(NullLogger):
    """Weights & Biases: one run per result row. Offline by default (`mode: online` to sync live;
    `wandb sync <run_dir>/wandb/offline-run-*` uploads an offline run later)."""

    def __init__(
        self,
        project: str = "sglp",
        entity: str | None = None,
        mode: str = "offline",
        group: str | None = None,
        tags: list[str] | None = None,
        log_model: bool = False,
    ) -> None:
        self.project, self.entity, self.mode, self.group, self.tags = project, entity, mode, group, list(tags or [])
        self.log_model = log_model
        self.run = None

    def start(self, name: str, config: Mapping[str, Any], run_dir: str | Path, tags: list[str] | None = None) -> None:
        import wandb

        self.run = wandb.init(
            project=self.project,
            entity=self.entity,
            mode=self.mode,
            group=self.group,
            name=name,
            config={**dict(config), "git_commit": git_commit()},
            dir=str(run_dir),
            tags=self.tags + list(tags or []),
            reinit="finish_previous",
        )

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def log_image(self, key: str, path: str | Path) -> None:
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Image(str(path))})

    def log_artifact(self, path: str | Path, name: str) -> None:
        """Upload a file (the pruned model) as a W&B model artifact, when `log_model: true`."""
        if self.run is not None and self.log_model:
            import wandb

            artifact = wandb.Artifact(f"{name}-{self.run.id}", type="model")
            artifact.add_file(str(path))
            self.run.log_artifact(artifact)

    def finish(self, summary: Mapping[str, Any] | None = None) -> None:
        if self.run is not None:
            summary = dict(summary or {})
            for k, v in {**summary, **paper_columns(summary)}.items():
                self.run.summary[k] = _cell(v)
            self.run.finish()
            self.run = None


def publish_row(
    row: Mapping[str, Any], run_dir: str | Path, results_table: str | Path | None, logger: NullLogger,
    unique: bool = False,
) -> None:  # fmt: skip
    """Everywhere a finished run's row goes: row.json/row.csv, the shared table (once per config_key when
    `unique`), W&B (numbers + summary), stdout."""
    write_row(row, run_dir)
    if results_table and not append_row(row, results_table, unique):
        print(f"{results_table} got this config's row from another job meanwhile: not appended twice")
    logger.log({k: v for k, v in row.items() if isinstance(v, (int, float))})
    logger.finish(row)
    print(format_row(row))


def emit_report(text: str, out: str | Path | None = None) -> None:
    """Print a rendered report and, if `out` is given, write it there (folders created)."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    print(text)
