"""Render a paper table from saved result rows: ours, the paper's, and the difference (Markdown + CSV + plot).

python scripts/make_table.py experiments/sglp_table7 --stand-in      # rows of table7_cpu -> results/table7_cpu.*
python scripts/make_table.py experiments/sglp_table1                 # rows of the GPU experiments

Rows are read from results/rows/<experiment>.csv for every experiment the table lists (with `_cpu` appended for
--stand-in). Without any row the script says so and writes nothing (an earlier table is never replaced by
an empty one).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sglp.experiment.plots import plot_accuracy_vs_reduction, plot_curve
from sglp.experiment.report import emit_report
from sglp.experiment.tables import (
    STAND_IN_SUFFIX,
    build_lines,
    curve,
    load_spec,
    read_rows,
    render_markdown,
    row_value,
    write_csv,
)  # fmt: skip

REHEARSAL_BANNER = (
    "> **REHEARSAL** (`rehearse=true`): synthetic data of the real shapes, random weights, minute-sized budgets. "
    "These numbers say only that every stage ran; they measure nothing.\n\n"
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", help="experiments/<table> folder (table.yaml + paper.csv)")
    ap.add_argument("--stand-in", action="store_true", help="use the experiments' CPU stand-ins (<name>_cpu)")
    ap.add_argument("--rows", default="results/rows", help="folder holding <experiment>.csv result rows")
    ap.add_argument("--out", default=None, help="output stem (default results/<table folder name>[_cpu])")
    ap.add_argument("--command", default=None, help="the command that made the rows, quoted in the table")
    ap.add_argument("--rehearsal", action="store_true", help="rows of rehearse=true runs, tables in outputs/rehearsal")
    args = ap.parse_args(argv)
    if args.rehearsal:
        args.rows = "outputs/rehearsal/rows" if args.rows == "results/rows" else args.rows

    spec, paper = load_spec(args.table)
    suffix = STAND_IN_SUFFIX if args.stand_in else ""
    files = [Path(args.rows) / f"{e}{suffix}.csv" for e in spec.experiments]
    rows = read_rows(files)
    if not rows:
        print(f"make_table: no result rows yet in {', '.join(map(str, files))}; nothing written", file=sys.stderr)
        return 0
    name = Path(args.table).name + suffix
    out = Path(args.out) if args.out else Path("outputs/rehearsal/tables" if args.rehearsal else "results") / name
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = build_lines(spec, paper, rows, args.stand_in)
    command = args.command or "make " + name.removeprefix("sglp_").replace("_", "-")
    text = render_markdown(spec, lines, args.stand_in, command, ", ".join(map(str, files)))
    if args.rehearsal:  # never mistaken for results
        text = REHEARSAL_BANNER + text
    plot = spec.plot or {}
    png = out.with_suffix(".png")
    if plot.get("x"):  # a sweep: our mean ± std per x, the paper's numbers where it gives them
        x, y = plot["x"], plot.get("y", "pruned_acc")
        series = {"ours" + (" (CPU stand-in)" if args.stand_in else ""): curve(rows, x, y)}
        pts = [(float(p[plot["paper_x"]]), float(p[plot["paper_y"]])) for p in paper
               if plot.get("paper_y") and p.get(plot["paper_y"]) not in ("", None)]  # fmt: skip
        if pts and not args.stand_in:
            series["paper"] = ([p[0] for p in pts], [p[1] for p in pts], [0.0] * len(pts))
        right = None
        if plot.get("y2"):
            y2 = {row_value(r, x): row_value(r, plot["y2"]) for r in rows}
            right = (plot.get("y2_label", plot["y2"]), list(y2), list(y2.values()))
        plot_curve(series, png, plot.get("x_label", x), plot.get("y_label", y), spec.title, right)
    else:  # methods: accuracy against MACs reduction, one colour per method
        points: dict[str, tuple[list[float], list[float]]] = {}
        for r in rows:
            a, m = row_value(r, "pruned_acc"), row_value(r, "macs_reduction_pct")
            if a is not None and m is not None:
                xs_, ys_ = points.setdefault(f"{r.get('experiment')}: {r.get('method')}", ([], []))
                xs_.append(m)
                ys_.append(a)
        if points:
            plot_accuracy_vs_reduction(points, png, spec.title)
    if png.exists():
        text += f"\n![{spec.title}]({png.name})\n"
    emit_report(text, out.with_suffix(".md"))
    write_csv(spec, lines, out.with_suffix(".csv"))
    print(f"wrote {out.with_suffix('.md')}, {out.with_suffix('.csv')}" + (f", {png}" if png.exists() else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
