"""Render the verdict page from the verdict grid's rows (`make verdicts-page`).

python scripts/verdicts.py results/rows/verdicts.csv [more.csv ...] --out results/verdicts.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sglp.experiment.report import emit_report
from sglp.experiment.tables import read_rows
from sglp.experiment.verdicts import render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="+", type=Path, help="result-row CSV files (missing files hold no rows)")
    parser.add_argument("--out", type=Path, default=None, help="Markdown file to write (default: stdout)")
    parser.add_argument(
        "--threshold", type=float, default=0.3, help="budget rule: points a control may move on doubling"
    )
    args = parser.parse_args(argv)
    rows = read_rows(args.rows)
    stem = str(args.out.with_suffix("")) if args.out else None
    command = (
        "python scripts/verdicts.py " + " ".join(str(p) for p in args.rows) + (f" --out {args.out}" if args.out else "")
    )
    emit_report(render(rows, ", ".join(str(p) for p in args.rows), command, args.threshold, stem), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
