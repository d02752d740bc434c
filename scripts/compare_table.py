"""Render the comparison grid (`make compare`) from its rows: per depth, every method's accuracy before and after
fine-tuning as mean ± 95 % t-interval over seeds, and its paired difference from the control (random units inside
the same segments) with its interval; bold marks a difference whose interval excludes 0. Budget curves where rows
carry extra fine-tuning budgets; one figure per depth (accuracy vs MACs reduction with intervals).

python scripts/compare_table.py results/rows/compare.csv --out results/compare_fashion_mnist.md \
    --plot results/compare_fashion_mnist --command "make compare"
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sglp.report import emit_report  # noqa: E402
from sglp.stats import Interval, paired_difference, t_interval  # noqa: E402
from sglp.tables import as_number, read_rows  # noqa: E402

CONTROL = "Random in SGLP segments"
STAGES = {"before FT": "pruned_acc_before_ft", "after FT": "pruned_acc"}
# The questions the grid was built to answer, as paired contrasts (what, method, reference): does SGLP's in-segment
# score beat random units inside the same segments (the paper's Table 6 question), do the segments beat plain random
# placement, and does the whole method beat plain random.
CONTRASTS = (
    ("in-segment search, repo defaults", "SGLP (repo defaults)", CONTROL),
    ("in-segment search, as the paper states it", "SGLP (paper)", CONTROL),
    ("segmentation (random units inside SGLP's segments vs anywhere)", CONTROL, "Random"),
    ("whole method, repo defaults, vs plain random", "SGLP (repo defaults)", "Random"),
    ("whole method, as the paper states it, vs plain random", "SGLP (paper)", "Random"),
)
SUBJECTS = ("SGLP (repo defaults)", "SGLP (paper)")  # compared with every other method too


def cells(rows: list[dict]) -> dict[int, dict[str, dict[int, dict]]]:
    """{units kept (target): {method: {seed: row}}}; a later row of the same (depth, method, seed) wins."""
    out: dict[int, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        target = as_number(r.get("units_kept_target")) or as_number(r["units_kept"])
        out[int(target)][r["method"]][int(r["seed"])] = r
    return out


def column(by_seed: dict[int, dict], key: str) -> dict[int, float]:
    return {s: v for s, r in by_seed.items() if (v := as_number(r.get(key))) is not None}


def fmt_diff(d: Interval | None) -> str:
    if d is None:
        return "–"
    text = f"{d.mean:+.2f} ± {d.half_width:.2f}" if d.n > 1 else f"{d.mean:+.2f} (1 seed)"
    return f"**{text}**" if d.excludes(0.0) else text


def verdict(d: Interval | None) -> str:
    """'wins' / 'loses' when the paired interval lies above / below 0, else 'no difference shown'."""
    if d is None:
        return "not run"
    if d.n < 2:
        return f"{d.mean:+.2f} (1 seed: no interval)"
    word = {1: "**wins**", -1: "**loses**", 0: "no difference shown"}[d.side()]
    return f"{word} {d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}], {d.n} seeds"


def verdicts_section(grid: dict[int, dict[str, dict[int, dict]]], control: str) -> list[str]:
    """The designed contrasts at every depth and stage, every method's significant differences from the control, each
    SGLP variant against every other method; ends with how many intervals that is (1 in 20 excludes 0 by chance)."""
    depths = sorted(grid, reverse=True)
    stages = [(keep, name) for keep in depths for name in STAGES]
    lines = ["## Verdicts", "",
             "Paired difference (accuracy points, method − reference) over the seeds both have, 95 % t-interval; "
             "**wins** / **loses** only where the interval excludes 0.", ""]  # fmt: skip
    header = ["question", "method − reference", *[f"{keep} kept, {name}" for keep, name in stages]]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for question, method, reference in CONTRASTS:
        if not any(method in grid[k] for k in depths):
            continue
        row = [question, f"`{method}` − `{reference}`"]
        for keep, name in stages:
            a, b = grid[keep].get(method), grid[keep].get(reference)
            row.append(
                verdict(paired_difference(column(a, STAGES[name]), column(b, STAGES[name])) if a and b else None)
            )
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    shown = 0
    for keep in depths:
        for name, key in STAGES.items():
            diffs = against(grid[keep], control, key)
            shown += len(diffs)
            above, below, _ = by_sign(diffs)
            lines.append(f"- {keep} kept, {name}: above the control: {above or 'none'}; below: {below or 'none'}.")
    lines.append("")
    for method in [m for m in SUBJECTS if any(m in grid[k] for k in depths)]:
        for keep in [k for k in depths if method in grid[k]]:
            for name, key in STAGES.items():
                diffs = {m: -d for m, d in against(grid[keep], method, key).items()}
                shown += len(diffs)
                if not diffs:
                    seeds = len(grid[keep][method])
                    lines.append(f"- `{method}`, {keep} kept, {name}: {seeds} seed{'s' * (seeds != 1)}, no method "
                                 "shares two with it: no interval yet.")  # fmt: skip
                    continue
                wins, losses, ties = by_sign(diffs)
                lines.append(f"- `{method}`, {keep} kept, {name}: better than {wins or 'none'}; worse than "
                             f"{losses or 'none'}; no difference shown against {ties or 'none'}.")  # fmt: skip
    if not shown:
        return lines + ["", "No method shares two seeds with another yet: nothing on this page is evidence.", ""]
    lines += ["", f"This section and the tables below rest on {shown} paired intervals; at 95 % about "
              f"{shown / 20:.1f} of them would exclude 0 by chance alone, so one bold cell outside the designed "
              "questions is weak evidence.", ""]  # fmt: skip
    return lines


def against(methods: dict[str, dict[int, dict]], reference: str, key: str) -> dict[str, Interval]:
    """Every other method's paired difference (method − reference) in column `key`, where they share ≥ 2 seeds."""
    ref = column(methods.get(reference, {}), key)
    diffs = {m: paired_difference(column(by_seed, key), ref) for m, by_seed in methods.items() if m != reference}
    return {m: d for m, d in diffs.items() if d is not None and d.n > 1}


def by_sign(diffs: dict[str, Interval]) -> tuple[str, str, str]:
    """Methods whose difference is significantly > 0, < 0, and neither, each as '`m` +x.xx, ...'."""
    groups: tuple[list[str], list[str], list[str]] = ([], [], [])
    for m, d in sorted(diffs.items()):
        groups[{1: 0, -1: 1, 0: 2}[d.side()]].append(f"`{m}` {d.mean:+.2f}")
    return tuple(", ".join(g) for g in groups)  # type: ignore[return-value]


def error_bar(iv: Interval) -> float:
    return iv.half_width if iv.n > 1 else 0.0


def budgets_of(by_seed: dict[int, dict]) -> list[int]:
    keys = {k for r in by_seed.values() for k, v in r.items() if v not in ("", None)}
    return sorted(int(m.group(1)) for k in keys if (m := re.fullmatch(r"pruned_acc_ft(\d+)", k)))


def recipe_steps(by_seed: dict[int, dict]) -> int | None:
    r = next(iter(by_seed.values()))
    epochs, per_epoch = as_number(r.get("finetune_epochs")), as_number(r.get("finetune_max_steps_per_epoch"))
    return int(epochs * per_epoch) if epochs and per_epoch else None


def depth_section(keep: int, methods: dict[str, dict[int, dict]], control: str) -> tuple[list[str], dict]:
    units = int(as_number(next(iter(next(iter(methods.values())).values()))["units_total"]))
    lines = [f"## {keep} of {units} blocks kept", ""]
    ctrl = methods.get(control, {})
    header = ["method", "seeds", "units kept", "MACs red. (%)", "before FT (%)", "after FT (%)",
              "Δ before FT vs control", "Δ after FT vs control", "pruning (s)"]  # fmt: skip
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    points, misses = {}, False
    order = sorted(methods, key=lambda m: -t_interval(list(column(methods[m], "pruned_acc").values()) or [0]).mean)
    for m in order:
        by_seed = methods[m]
        acc = {name: column(by_seed, key) for name, key in STAGES.items()}
        macs = t_interval(list(column(by_seed, "macs_reduction_pct").values()))
        after = t_interval(list(acc["after FT"].values()))
        diffs = [None if m == control else paired_difference(acc[n], column(ctrl, STAGES[n])) for n in STAGES]
        kept = [int(v) for _, v in sorted(column(by_seed, "units_kept").items())]
        short = any(k != keep for k in kept)
        cells_ = [f"`{m}`" + (" (control)" if m == control else ""), ",".join(map(str, sorted(by_seed))),
                  ",".join(map(str, kept)) if short else str(keep), macs.format(1),
                  t_interval(list(acc["before FT"].values())).format(), after.format(),
                  *[fmt_diff(d) if m != control else "" for d in diffs],
                  t_interval(list(column(by_seed, "seconds_prune").values())).format(0)]  # fmt: skip
        lines.append("| " + " | ".join(cells_) + " |")
        points[m] = ((macs.mean, error_bar(macs)), (after.mean, error_bar(after)))
        misses = misses or short
    if misses:
        lines += ["", f"Units kept per seed where a method kept other than {keep}: it is listed at its target depth "
                  "but removes more (or less) than the others: read its MACs column beside its accuracy."]  # fmt: skip
    return lines + [""], points


def budget_section(keep: int, methods: dict[str, dict[int, dict]], control: str) -> tuple[list[str], dict]:
    with_budgets = {m: b for m, b in methods.items() if budgets_of(b)}
    if not with_budgets:
        return [], {}
    steps = sorted({0, *(s for b in with_budgets.values() for s in [*budgets_of(b), recipe_steps(b) or 0])})
    lines = [f"### Budget curves, {keep} blocks kept (accuracy after n fine-tuning steps, each from the same pruned "
             "model; 0 = before fine-tuning)", ""]  # fmt: skip
    header = ["method", "seeds", *[f"{s} steps (%)" for s in steps], *[f"Δ {s} vs control" for s in steps]]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    curves = {}

    def series(by_seed: dict[int, dict]) -> dict[int, dict[int, float]]:
        rs = recipe_steps(by_seed)
        key = {0: "pruned_acc_before_ft", **({rs: "pruned_acc"} if rs else {})}
        return {s: column(by_seed, key.get(s, f"pruned_acc_ft{s}")) for s in steps}

    ctrl = series(with_budgets.get(control, {})) if control in with_budgets else {}
    for m, by_seed in sorted(with_budgets.items(), key=lambda kv: kv[0] != control):
        values = series(by_seed)
        ivs = {s: t_interval(list(v.values())) for s, v in values.items() if v}
        diffs = [("" if m == control else fmt_diff(paired_difference(values[s], ctrl.get(s, {})))) for s in steps]
        shown = [ivs[s].format() if s in ivs else "–" for s in steps]
        lines.append("| " + " | ".join([f"`{m}`", ",".join(map(str, sorted(by_seed))), *shown, *diffs]) + " |")
        curves[m] = ([s for s in ivs], [ivs[s].mean for s in ivs], [error_bar(ivs[s]) for s in ivs])
    return lines + [""], curves


def cpu_hours(rows: list[dict]) -> float:
    return sum(as_number(r.get("seconds_total")) or 0.0 for r in rows) / 3600


def render(rows: list[dict], source: str, command: str | None, control: str, plot: Path | None) -> str:
    from sglp.plots import plot_curve, plot_forest, plot_intervals

    grid = cells(rows)
    first = rows[0]
    lines = [f"# Layer-pruning methods compared with intervals: {first['model']} / {first['dataset']}", ""]
    made = f"Made by `{command}` from" if command else "Rendered from"
    lines += [f"{made} `{source}` ({len(rows)} rows, {cpu_hours(rows):.1f} CPU hours of run time, the sum of the "
              "rows' `seconds_total`; results/README.md says which rows shared the CPU with other jobs, whose seconds "
              "overstate the cost alone).", "",
              "Every cell: mean ± 95 % t-interval over the seeds listed (a seed fixes the calibration batches, the "
              "random draws and the fine-tuning order). Δ vs control: the paired difference from "
              f"`{control}` over the seeds both have, with its 95 % t-interval; **bold** = the interval excludes 0 "
              "(a difference the seeds support). A cell with one seed has no interval and nothing in it is bold.",
              ""]  # fmt: skip
    lines += verdicts_section(grid, control)
    for keep in sorted(grid, reverse=True):
        section, points = depth_section(keep, grid[keep], control)
        lines += section
        if plot and points:
            path = plot.parent / f"{plot.name}_keep{keep}.png"
            plot_intervals(points, path, "MACs reduction (%)", "test accuracy after fine-tuning (%)",
                           f"{keep} blocks kept: mean ± 95 % t-interval over seeds", highlight=(control,),
                           ylim=(0.0, 100.0))  # fmt: skip
            lines += [f"![accuracy vs MACs, {keep} kept]({path.name})", ""]
        panels = {name: {m: (d.mean, d.low, d.high) for m, d in against(grid[keep], control, key).items()}
                  for name, key in STAGES.items()}  # fmt: skip
        if plot and any(panels.values()):
            path = plot.parent / f"{plot.name}_diff_keep{keep}.png"
            plot_forest(panels, path, "accuracy − control (points)",
                        f"{keep} blocks kept: paired difference from `{control}`, 95 % t-interval over shared seeds "
                        "(filled: excludes 0)")  # fmt: skip
            lines += [f"![paired differences, {keep} kept]({path.name})", ""]
        budget, curves = budget_section(keep, grid[keep], control)
        lines += budget
        if plot and curves:
            path = plot.parent / f"{plot.name}_budgets_keep{keep}.png"
            plot_curve(curves, path, "fine-tuning steps", "test accuracy (%)",
                       f"{keep} blocks kept: accuracy vs fine-tuning budget (mean ± 95 % t-interval)")  # fmt: skip
            lines += [f"![budget curves, {keep} kept]({path.name})", ""]
    lines += ["Removed units per depth, method and seed (0-based unit indices in forward order):", ""]
    for keep in sorted(grid, reverse=True):
        for m, by_seed in sorted(grid[keep].items()):
            per_seed = "; ".join(f"{s}: {json.loads(r['removed'])}" for s, r in sorted(by_seed.items()))
            lines.append(f"- {keep} kept, `{m}`: {per_seed}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", type=Path, help="CSV of result rows (the grid's results_table)")
    ap.add_argument("--out", type=Path, help="Markdown file to write")
    ap.add_argument("--plot", type=Path, help="figure path prefix: <prefix>_keep<n>.png, <prefix>_budgets_keep<n>.png")
    ap.add_argument("--control", default=CONTROL, help="the method every other is compared with (paired)")
    ap.add_argument("--command", help="the command that made the rows (stated in the output)")
    args = ap.parse_args(argv)
    rows = read_rows([args.table])
    if not rows:
        print(f"compare_table: {args.table} has no rows yet: run `make compare`", file=sys.stderr)
        return 2
    source = str(args.table.resolve().relative_to(ROOT)) if args.table.resolve().is_relative_to(ROOT) else args.table
    emit_report(render(rows, str(source), args.command, args.control, args.plot), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
