"""Render a run's result row (row.json) as a Markdown table, e.g. for results/ and the README.

python scripts/render_row.py outputs/demo/<run>/row.json --out results/demo.md --command "make demo"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sglp.report import emit_report

SUMMARY = [
    ("model / dataset", lambda r: f"{r['model']} / {r['dataset']}"),
    (
        "method",
        lambda r: (
            f"{r['method']} (k={r['k']}, scorer={r['scorer']} "
            f"({'largest' if r.get('scorer_maximize') else 'smallest'} kept), CKA={r['cka_estimator']})"
        ),
    ),
    ("units kept / total", lambda r: f"{r['units_kept']} / {r['units_total']}"),
    ("segments (unit indices, from 0)", lambda r: str(r["segments"])),
    ("removed units", lambda r: str(r["removed"])),
    ("dense test accuracy (%)", lambda r: f"{r['dense_acc']:.2f}"),
    ("pruned, before fine-tuning (%)", lambda r: f"{r['pruned_acc_before_ft']:.2f}"),
    ("pruned, after fine-tuning (%)", lambda r: f"{r['pruned_acc']:.2f}"),
    (
        "fine-tuning",
        lambda r: f"{r['finetune_epochs']} epoch(s), at most {r['finetune_max_steps_per_epoch']} steps each",
    ),
    (
        "FLOPs dense -> pruned (reduction)",
        lambda r: (
            f"{r['flops_dense'] / 1e6:.1f}M -> {r['flops_pruned'] / 1e6:.1f}M FLOPs "
            f"({r['flops_reduction_pct']:.1f}%); MACs {r['macs_dense'] / 1e6:.1f}M -> "
            f"{r['macs_pruned'] / 1e6:.1f}M ({r['macs_reduction_pct']:.1f}%)"
        ),
    ),
    (
        "parameters dense -> pruned (reduction)",
        lambda r: f"{r['params_dense']:,} -> {r['params_pruned']:,} ({r['params_reduction_pct']:.1f}%)",
    ),
    (
        "search space / evaluated / seconds",
        lambda r: f"{r['search_space']} / {r.get('search_evaluated', '')} / {r['search_seconds']:.1f}",
    ),
]


def render(row: dict, command: str | None = None) -> str:
    lines = ["| quantity | value |", "|---|---|"]
    lines += [f"| {name} | {fn(row)} |" for name, fn in SUMMARY]
    for key in sorted(k for k in row if k.startswith("latency_ms_dense_bs")):
        b = key.removeprefix("latency_ms_dense_bs")
        lines.append(
            f"| CPU latency, batch {b} (ms, median) | {row[key]:.2f} -> {row[f'latency_ms_pruned_bs{b}']:.2f} "
            f"({row[f'latency_reduction_pct_bs{b}']:.1f}% less) |"
        )
    stages = ", ".join(
        f"{k.removeprefix('seconds_')} {v:.0f}s"
        for k, v in row.items()
        if k.startswith("seconds_") and k != "seconds_total"
    )
    if "seconds_total" in row:
        stages += f"; total {row['seconds_total'] / 60:.1f} min"
    lines.append(f"| wall time per stage | {stages} |")
    lines.append(f"| git commit | {row['git_commit']} |")
    head = f"Made by `{command}`" if command else "Made by sglp"
    run = Path(row["run_dir"])
    run = run.relative_to(Path.cwd()) if run.is_relative_to(Path.cwd()) else run
    return (
        f"{head}; run directory `{run}` (git-ignored; the same row is in `results/runs.csv`).\n\n"
        + "\n".join(lines)
        + "\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("row", type=Path, help="row.json written by run.py")
    ap.add_argument("--out", type=Path, help="write the Markdown here (default: print)")
    ap.add_argument("--command", help="the command that made the run, shown above the table")
    args = ap.parse_args()
    emit_report(render(json.loads(args.row.read_text()), args.command), args.out)


if __name__ == "__main__":
    main()
