"""Does the in-segment score pick good layers? (sglp.experiment.scorer_study)

python scripts/study_scorers.py                      # make scorer-study: runs what is missing, then renders
python scripts/study_scorers.py --render-only        # the page from the rows so far
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sglp.experiment.report import emit_report
from sglp.experiment.scorer_study import NUMERIC, StudySettings, render, run
from sglp.experiment.tables import as_number, read_csv

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = StudySettings(checkpoint=str(ROOT / "checkpoints/resnet56_fashion_mnist/model.pt"))  # the defaults
    ap.add_argument("--checkpoint", default=d.checkpoint)
    ap.add_argument("--keep", type=int, nargs="+", default=list(d.keep))
    ap.add_argument("--k", type=int, default=d.k)
    ap.add_argument("--candidates", type=int, default=d.candidates)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(d.seeds))
    ap.add_argument("--finetune-steps", type=int, default=d.finetune_steps)
    ap.add_argument("--score-batches", type=int, default=d.score_batches)
    ap.add_argument("--rows", type=Path, default=Path(d.rows))
    ap.add_argument("--out", type=Path, default=Path("results/scorer_study.md"))
    ap.add_argument("--render-only", action="store_true", help="render the page from the rows so far")
    ap.add_argument("--command", default=d.command, help="the command named on the page")
    args = ap.parse_args(argv)
    settings = StudySettings(checkpoint=args.checkpoint, keep=tuple(args.keep), k=args.k, candidates=args.candidates,
                             seeds=tuple(args.seeds), finetune_steps=args.finetune_steps,
                             score_batches=args.score_batches, rows=str(args.rows), command=args.command)  # fmt: skip
    if not args.render_only:
        run(settings)
    raw = read_csv(args.rows)
    if not raw:
        print(f"study_scorers: {args.rows} has no rows yet: run `make scorer-study`", file=sys.stderr)
        return 2
    rows = [{**r, **{k: as_number(r[k]) for k in NUMERIC}} for r in raw]
    hours = sum(r["seconds"] or 0.0 for r in rows) / 3600
    emit_report(render(rows, settings, hours), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
