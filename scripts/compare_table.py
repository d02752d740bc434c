"""Render a method comparison from a results table (CSV of result rows): one line per method, mean ± std over
seeds, sorted by accuracy after fine-tuning; plus an accuracy-vs-MACs-reduction scatter.

python scripts/compare_table.py results/baselines_fashion_mnist.csv --out results/baselines_fashion_mnist.md \
    --plot results/baselines_fashion_mnist.png --command "make compare"
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from sglp.plots import plot_accuracy_vs_reduction
from sglp.report import emit_report
from sglp.tables import read_rows


def mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def num(row: dict, key: str) -> float | None:
    v = row.get(key, "")
    return float(v) if v not in ("", None) else None


def summarise(rows: list[dict]) -> list[dict]:
    by_method: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_method[r["method"]].append(r)
    out = []
    for method, rs in by_method.items():
        rs = sorted(rs, key=lambda r: int(r["seed"]))

        def col(key: str, rs=rs) -> list[float]:
            return [v for v in (num(r, key) for r in rs) if v is not None]

        latency_keys = sorted(
            (k for k in rs[0] if k.startswith("latency_reduction_pct_bs") and rs[0][k] != ""),
            key=lambda k: int(k.rsplit("bs", 1)[1]),
        )
        out.append(
            {
                "method": method,
                "seeds": [int(r["seed"]) for r in rs],
                "dense": col("dense_acc"),
                "before": col("pruned_acc_before_ft"),
                "after": col("pruned_acc"),
                "kept": sorted({int(r["units_kept"]) for r in rs}),
                "macs": col("macs_reduction_pct"),
                "params": col("params_reduction_pct"),
                "latency": {k.rsplit("bs", 1)[1]: col(k) for k in latency_keys},
                "seconds": col("seconds_prune"),
                "removed": [json.loads(r["removed"]) for r in rs],
            }
        )
    return sorted(out, key=lambda s: -statistics.mean(s["after"] or [0.0]))


def render(summary: list[dict], title: str, command: str | None) -> str:
    bs = sorted({b for s in summary for b in s["latency"]}, key=int)
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Made by `{command}` (rows: one per run; mean ± std over the seeds listed).", ""]
    header = (
        [
            "method",
            "seeds",
            "kept",
            "dense acc. (%)",
            "before FT (%)",
            "after FT (%)",
            "MACs red. (%)",
            "params red. (%)",
        ]
        + [f"latency red. bs{b} (%)" for b in bs]
        + ["pruning time (s)"]
    )
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summary:
        cells = [
            f"`{s['method']}`",
            ",".join(map(str, s["seeds"])),
            "/".join(map(str, s["kept"])),
            mean_std(s["dense"]),
            mean_std(s["before"]),
            f"**{mean_std(s['after'])}**",
            mean_std(s["macs"]),
            mean_std(s["params"]),
            *[mean_std(s["latency"].get(b, [])) for b in bs],
            mean_std(s["seconds"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Removed units per seed (0-based unit indices in forward order):", ""]
    for s in summary:
        per_seed = "; ".join(f"seed {seed}: {rem}" for seed, rem in zip(s["seeds"], s["removed"]))
        lines.append(f"- `{s['method']}`: {per_seed}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", type=Path, help="CSV of result rows (results_table of the runs)")
    ap.add_argument("--out", type=Path, help="Markdown file to write")
    ap.add_argument("--plot", type=Path, help="PNG: accuracy after fine-tuning vs MACs reduction")
    ap.add_argument("--title", default="Layer-pruning methods compared")
    ap.add_argument("--command", help="the command that made the rows (stated in the output)")
    args = ap.parse_args()
    rows = read_rows([args.table])  # old labels (sglp/none/l1) read as today's (one-shot/l1)
    if not rows:
        raise SystemExit(f"{args.table} has no rows")
    summary = summarise(rows)
    emit_report(render(summary, args.title, args.command), args.out)
    if args.plot:
        points = {s["method"]: (s["macs"], s["after"]) for s in summary}
        plot_accuracy_vs_reduction(points, args.plot, title=args.title)


if __name__ == "__main__":
    main()
