"""Run a paper table's jobs and render it: `make table-<folder>` / `make table-<folder>-cpu` call this.

python scripts/run_table.py sglp_table1                 # experiments/sglp_table1/table.yaml `runs` (GPU)
python scripts/run_table.py table1 --cpu                # the CPU stand-in's `cpu_runs` (short names work too)
python scripts/run_table.py table1 dry_run=true         # overrides after the table go to every run.py call
python scripts/run_table.py --list                      # every table, its title and how many runs it has

Each entry of `runs` / `cpu_runs` is one `python run.py -m <overrides>` call (an experiment sweeps inside itself,
hydra.sweeper.params); then scripts/make_table.py renders results/<folder>[_cpu].md from the rows. With
`rehearse=true` the table is rendered from the rehearsal rows; with `dry_run=true` nothing is rendered.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from sglp.experiment.tables import load_spec, table_folder

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", nargs="?", help="experiments/<folder> name, or its short name (table1, layerprune-table2)")
    ap.add_argument("overrides", nargs="*", help="run.py overrides added to every run (e.g. dry_run=true)")
    ap.add_argument("--cpu", action="store_true", help="the CPU stand-in (cpu_runs)")
    ap.add_argument("--list", action="store_true", help="list the tables and exit")
    ap.add_argument("-n", "--dry-print", action="store_true", help="print the commands without running them")
    args = ap.parse_intermixed_args(argv)
    experiments = ROOT / "experiments"
    if args.list or not args.table:
        for folder in sorted(p for p in experiments.iterdir() if (p / "paper.csv").exists()):
            if (folder / "table.yaml").exists():
                spec, _ = load_spec(folder)
                print(f"make table-{folder.name:<20} {len(spec.runs)} GPU run(s), {len(spec.cpu_runs)} CPU: "
                      f"{spec.title}")  # fmt: skip
            else:
                print(f"make table-{folder.name:<20} not reproduced: {folder.name}/README.md")
        return 0
    folder = table_folder(args.table, experiments)
    if not (folder / "table.yaml").exists():  # a table we do not reproduce says why
        print((folder / "README.md").read_text())
        return 0
    spec, _ = load_spec(folder)
    runs = spec.cpu_runs if args.cpu else spec.runs
    if not runs:
        print(f"{folder.name} has no {'cpu_runs' if args.cpu else 'runs'} in its table.yaml", file=sys.stderr)
        return 2
    commands = [["make", "-s", target] for target in (spec.cpu_needs if args.cpu else [])]
    commands += [[sys.executable, "run.py", "-m", *shlex.split(run), *args.overrides] for run in runs]
    if "dry_run=true" not in args.overrides:
        render = [sys.executable, "scripts/make_table.py", str(folder.relative_to(ROOT))]
        render += ["--stand-in"] * args.cpu + ["--rehearsal"] * ("rehearse=true" in args.overrides)
        render += ["--command", f"make table-{folder.name}{'-cpu' * args.cpu}"]
        commands.append(render)
    for cmd in commands:
        print("+ " + shlex.join(cmd), flush=True)
        rc = 0 if args.dry_print else subprocess.run(cmd, cwd=ROOT).returncode
        if rc != 0:  # run.py's exit 2 (bad input, already explained) passes through
            print(f"run_table: stopped: exit {rc} from {shlex.join(cmd)}", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
