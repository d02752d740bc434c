"""Render a run's result row (row.json) as a Markdown table, e.g. for results/ and the README.

python scripts/render_row.py outputs/demo/<run>/row.json --out results/demo.md --command "make demo"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sglp.core.provenance import where_it_ran
from sglp.experiment.report import emit_report

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


def llm_summary(r: dict) -> list[tuple[str, str]]:
    """Rows of an LLM result: perplexity and each task's accuracy, dense -> pruned before -> after recovery."""
    out = [
        ("model / dataset", f"{r['model']} / {r['dataset']}"),
        ("method", f"{r['method']} (k={r['k']}, scorer={r['scorer']})"),
        ("decoder layers kept / total", f"{r['units_kept']} / {r['units_total']}"),
        ("segments (layer indices, from 0)", str(r["segments"])),
        ("removed layers", str(r["removed"])),
        ("test perplexity: dense -> pruned -> after LoRA",
         f"{r['ppl_dense']:.2f} -> {r['ppl_pruned_before_ft']:.2f} -> {r['ppl_pruned']:.2f}"),
    ]  # fmt: skip
    tasks = [k.removesuffix("_dense") for k in r if k.endswith("_dense") and f"{k[:-6]}_pruned" in r]
    for t in (t for t in tasks if f"{t}_pruned_before_ft" in r and t != "ppl"):
        out.append(
            (f"{t} accuracy (%): dense -> pruned -> after LoRA",
             f"{r[f'{t}_dense']:.2f} -> {r[f'{t}_pruned_before_ft']:.2f} -> {r[f'{t}_pruned']:.2f}")
        )  # fmt: skip
    out.append(("LoRA steps / final loss", f"{r['lora_steps']} / {r['lora_final_loss']}"))
    out.append(("parameters dense -> pruned (reduction)",
                f"{r['params_dense']:,} -> {r['params_pruned']:,} ({r['params_reduction_pct']:.1f}%)"))  # fmt: skip
    for key in sorted(k for k in r if k.startswith("tokens_per_s_dense_bs")):
        b = key.removeprefix("tokens_per_s_dense_bs")
        pruned, speedup = r[f"tokens_per_s_pruned_bs{b}"], r[f"speedup_bs{b}"]
        out.append((f"forward throughput, batch {b} (tokens/s)", f"{r[key]:,.0f} -> {pruned:,.0f} (x{speedup:.2f})"))
    out.append(("search space / evaluated", f"{r['search_space']} / {r.get('search_evaluated', '')}"))
    return out


def render(row: dict, command: str | None = None) -> str:
    lines = ["| quantity | value |", "|---|---|"]
    summary = llm_summary(row) if "ppl_dense" in row else [(name, fn(row)) for name, fn in SUMMARY]
    lines += [f"| {name} | {value} |" for name, value in summary]
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
    where = f"\n{where_it_ran(row, row)}\n" if "cpu" in row else ""  # rows before provenance have none
    return (
        f"{head}; run directory `{run}` (git-ignored; the same row is in `outputs/runs.csv`).\n\n"
        + "\n".join(lines)
        + "\n"
        + where
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
