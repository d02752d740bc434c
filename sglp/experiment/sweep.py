"""Sweep summary: when a Hydra multirun ends, one table (Markdown + CSV) and one plot of its jobs' rows, written
in the sweep directory. The settings that vary across jobs become the table's first columns; a single numeric
setting (k, kept units, batch size) becomes the plot's x axis, otherwise accuracy is plotted against MACs
reduction. Jobs skipped by `skip_existing` count too: their run directory holds the row they stand for."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sglp.experiment.tables import as_number, curve

METRICS = (
    "method",
    "units_kept",
    "pruned_acc",
    "macs_reduction_pct",
    "params_reduction_pct",
    "ppl_pruned",
    "avg_acc_pruned",
    "search_space",
    "search_seconds",
    "seconds_prune",
)


def parse_overrides(text: str) -> dict[str, str]:
    """'a=1,b=x' (Hydra's override_dirname with kv_sep '=' and item_sep ',') -> {'a': '1', 'b': 'x'}.
    Values holding commas (lists) stay attached to their key."""
    out: dict[str, str] = {}
    key = None
    for part in (text or "").split(","):
        if "=" in part and not part.startswith(("[", " ")):
            key, value = part.split("=", 1)
            out[key] = value
        elif key is not None:
            out[key] += "," + part
    return out


def sweep_rows(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """The row.json of every job directory under `sweep_dir`, in job order."""

    def job_number(p: Path) -> int:
        head = p.parent.name.split("_", 1)[0]
        return int(head) if head.isdigit() else 1 << 30

    paths = sorted(Path(sweep_dir).glob("*/row.json"), key=job_number)
    return [json.loads(p.read_text()) for p in paths]


def varying_settings(rows: list[Mapping[str, Any]]) -> list[str]:
    """Override keys whose value differs between rows (or is missing in some), in first-seen order."""
    overrides = [parse_overrides(str(r.get("overrides", ""))) for r in rows]
    keys = list(dict.fromkeys(k for o in overrides for k in o))
    return [k for k in keys if len({o.get(k) for o in overrides}) > 1]


def summarize_sweep(sweep_dir: str | Path) -> Path | None:
    """Write sweep_summary.md/.csv/.png in `sweep_dir` from its jobs' rows; None when no job wrote a row."""
    from sglp.experiment.plots import plot_accuracy_vs_reduction, plot_curve

    sweep_dir = Path(sweep_dir)
    rows = sweep_rows(sweep_dir)
    if not rows:
        return None
    settings = varying_settings(rows)
    metrics = [m for m in METRICS if any(r.get(m) not in (None, "") for r in rows)]
    table = []
    for r in rows:
        o = parse_overrides(str(r.get("overrides", "")))
        table.append({**{s: o.get(s, "") for s in settings}, **{m: r.get(m, "") for m in metrics}})
    with open(sweep_dir / "sweep_summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)

    def cell(v: Any) -> str:
        x = as_number(v)
        return f"{x:.2f}" if x is not None and not float(x).is_integer() else str(v)

    head = list(table[0])
    md = [f"# Sweep summary: {sweep_dir}", "", f"{len(rows)} runs. Columns: the varied settings, then the rows.", ""]
    md += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    md += ["| " + " | ".join(cell(t[h]) for h in head) + " |" for t in table]
    y = "pruned_acc" if "pruned_acc" in metrics else "ppl_pruned" if "ppl_pruned" in metrics else None
    png = sweep_dir / "sweep_summary.png"
    numeric = [s for s in settings if all(as_number(t[s]) is not None for t in table)]
    if y and len(settings) == 1 and numeric:
        x = numeric[0]
        series = {"runs": curve(table, x, y)}
        plot_curve(series, png, x, y, str(sweep_dir.name))
    elif y == "pruned_acc":
        points: dict[str, tuple[list[float], list[float]]] = {}
        for t, r in zip(table, rows):
            label = ",".join(f"{s}={t[s]}" for s in settings) or str(r.get("method"))
            if as_number(r.get("macs_reduction_pct")) is not None and as_number(r.get(y)) is not None:
                points[label] = ([float(r["macs_reduction_pct"])], [float(r[y])])
        if points:
            plot_accuracy_vs_reduction(points, png, str(sweep_dir.name))
    if png.exists():
        md += ["", f"![sweep summary]({png.name})"]
    out = sweep_dir / "sweep_summary.md"
    out.write_text("\n".join(md) + "\n")
    return out


try:  # the Hydra callback (Hydra is a dependency of run.py; the functions above do not need it)
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]


class SweepSummary(Callback):
    """Hydra callback (configs/config.yaml, hydra.callbacks): summarise a multirun when it ends."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        out = summarize_sweep(config.hydra.sweep.dir)
        if out is not None:
            print(f"sweep summary: {out}")
