"""The verdict page (`make verdicts-page`): methods compared like with like, from the rows of the verdict grid.

Rules, each a function below:
- a row counts at the depth it *kept* (`units_kept`), never at its target;
- a method that meets the depth target is compared, paired by seed (= backbone), with its own control at that
  depth (random units inside its segments, same counts per segment) and with plain random at that depth; a method
  that picks its depth, with its controls at the depth it picked (`matched_controls`);
- the verdict budget is the smallest fine-tuning budget B at which every control's mean over seeds moves by less
  than `threshold` points when B doubles (`converged_budget`); every budget is shown;
- p-values (paired t over seeds) are Holm-corrected over every designed question of the page, at the verdict budget;
  only the questions that survive are bold.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sglp.core.stats import Interval, holm, paired_t_pvalue, t_interval
from sglp.experiment.tables import as_number, provenance_lines

Row = Mapping[str, Any]
CONTROL_SUFFIXES = {"in_segments": " · random in its segments", "same_depth": " · random, same depth"}
PLAIN_RANDOM = "Random"


def recipe_steps(row: Row) -> int | None:
    """Fine-tuning steps of the row's own recipe (`pruned_acc`): epochs x the per-epoch cap, when capped."""
    epochs, cap = as_number(row.get("finetune_epochs")), as_number(row.get("finetune_max_steps_per_epoch"))
    return int(epochs * cap) if epochs is not None and cap is not None else None


def accuracy_at(row: Row, budget: int) -> float | None:
    """Test accuracy after `budget` fine-tuning steps: the recipe's column when the recipe has that many steps,
    else the extra budget's column `pruned_acc_ft<budget>`; None when the row has neither."""
    if recipe_steps(row) == budget:
        return as_number(row.get("pruned_acc"))
    return as_number(row.get(f"pruned_acc_ft{budget}"))


def budgets(rows: Iterable[Row]) -> list[int]:
    """Every fine-tuning budget (steps) some row has an accuracy for, ascending."""
    found: set[int] = set()
    for r in rows:
        if (steps := recipe_steps(r)) is not None:
            found.add(steps)
        found.update(int(k.removeprefix("pruned_acc_ft")) for k, v in r.items()
                     if k.startswith("pruned_acc_ft") and as_number(v) is not None)  # fmt: skip
    return sorted(found)


def network(row: Row) -> str:
    """The network a row pruned (its model config's name: one curve family per network)."""
    return str(row.get("model") or row.get("experiment") or "?")


def picks_depth(row: Row) -> bool:
    """Whether the row's method chose its own depth (no depth target recorded)."""
    return as_number(row.get("units_kept_target")) is None


def is_control(row: Row) -> bool:
    return bool(row.get("control"))


@dataclass(frozen=True)
class Cell:
    """One network x method x kept depth: accuracy per seed at each budget, and MACs reduction per seed."""

    network: str
    method: str
    kept: int
    acc: dict[int, dict[int, float]]  # budget -> seed -> accuracy (%)
    macs: dict[int, float]  # seed -> MACs reduction (%)


def cells(rows: Sequence[Row]) -> dict[tuple[str, str, int], Cell]:
    """Rows grouped by (network, method, units kept); a later row of the same seed replaces an earlier one."""
    grid: dict[tuple[str, str, int], dict[int, Row]] = defaultdict(dict)
    for r in rows:
        grid[(network(r), str(r["method"]), int(float(r["units_kept"])))][int(float(r["seed"]))] = r
    out = {}
    for (net, method, kept), by_seed in grid.items():
        acc = {b: {s: a for s, r in by_seed.items() if (a := accuracy_at(r, b)) is not None}
               for b in budgets(by_seed.values())}  # fmt: skip
        macs = {s: m for s, r in by_seed.items() if (m := as_number(r.get("macs_reduction_pct"))) is not None}
        out[(net, method, kept)] = Cell(net, method, kept, acc, macs)
    return out


def control_labels(rows: Sequence[Row]) -> set[str]:
    """The method labels that are controls: plain random and every matched control."""
    return {PLAIN_RANDOM} | {str(r["method"]) for r in rows if is_control(r)}


def converged_budget(
    rows: Sequence[Row], threshold: float = 0.3
) -> tuple[int | None, list[tuple[str, str, int, int, float, float]]]:
    """The smallest budget B such that, for every control cell (network, control method, kept) with accuracies at
    both B and 2B, the mean over seeds moves by less than `threshold` points from B to 2B (at least one such cell);
    None when no budget of the ladder qualifies. Also every (network, control, kept, B, mean at B, change to 2B)."""
    controls = control_labels(rows)
    steps: list[tuple[str, str, int, int, float, float]] = []
    for (net, method, kept), cell in sorted(cells(rows).items()):
        if method not in controls:
            continue
        for b in sorted(cell.acc):
            low, high = cell.acc[b], cell.acc.get(2 * b, {})
            shared = sorted(set(low) & set(high))
            if shared:
                mean_b = sum(low[s] for s in shared) / len(shared)
                change = sum(high[s] for s in shared) / len(shared) - mean_b
                steps.append((net, method, kept, b, mean_b, change))
    for b in sorted({s[3] for s in steps}):
        at_b = [s for s in steps if s[3] == b]
        if at_b and all(abs(s[5]) < threshold for s in at_b):
            return b, steps
    return None, steps


@dataclass(frozen=True)
class Question:
    """A designed paired comparison: `method` minus `reference` at `kept` units on `network`, over shared seeds."""

    network: str
    kind: str  # "own control" | "plain random" | "same depth"
    method: str
    reference: str
    kept: int | None  # None: the method picked its depth per seed (the controls share each seed's depth)
    differences: dict[int, float]  # seed -> method - reference (accuracy points)

    @property
    def interval(self) -> Interval:
        return t_interval(list(self.differences.values()))

    @property
    def pvalue(self) -> float | None:
        return paired_t_pvalue(list(self.differences.values())) if len(self.differences) >= 2 else None


def _paired(a: Mapping[int, float], b: Mapping[int, float]) -> dict[int, float]:
    return {s: a[s] - b[s] for s in sorted(set(a) & set(b))}


def questions(rows: Sequence[Row], budget: int) -> list[Question]:
    """The designed questions at `budget`: each method that meets its target against its in-segment control and
    against plain random at each depth; each method that picks its depth against its two matched controls, paired
    per seed whatever depth each seed kept."""
    grid = cells(rows)
    controls = control_labels(rows)
    out: list[Question] = []
    methods = sorted({(network(r), str(r["method"]), picks_depth(r)) for r in rows if str(r["method"]) not in controls})
    for net, method, own_depth in methods:
        if own_depth:  # per seed at whatever depth it kept: merge its cells over depths
            mine = _by_seed(grid, net, method, budget)
            for control, suffix in CONTROL_SUFFIXES.items():
                ref = _by_seed(grid, net, method + suffix, budget)
                if diffs := _paired(mine, ref):
                    kind = "own control" if control == "in_segments" else "same depth"
                    out.append(Question(net, kind, method, method + suffix, None, diffs))
            continue
        for (n, m, kept), cell in sorted(grid.items()):
            if (n, m) != (net, method):
                continue
            for kind, reference in (
                ("own control", method + CONTROL_SUFFIXES["in_segments"]),
                ("plain random", PLAIN_RANDOM),
            ):
                ref = grid.get((net, reference, kept))
                if ref is not None and (diffs := _paired(cell.acc.get(budget, {}), ref.acc.get(budget, {}))):
                    out.append(Question(net, kind, method, reference, kept, diffs))
    return out


def _by_seed(grid: Mapping[tuple[str, str, int], Cell], net: str, method: str, budget: int) -> dict[int, float]:
    merged: dict[int, float] = {}
    for (n, m, _), cell in grid.items():
        if (n, m) == (net, method):
            merged.update(cell.acc.get(budget, {}))
    return merged


@dataclass(frozen=True)
class Verdict:
    question: Question
    adjusted: float | None  # Holm-adjusted p-value over the family (None: fewer than 2 seeds, not in the family)

    @property
    def survives(self) -> bool:
        return self.adjusted is not None and self.adjusted <= 0.05


def holm_verdicts(family: Sequence[Question]) -> list[Verdict]:
    """Holm-Bonferroni over the questions with a p-value (>= 2 seeds); the others are listed, uncorrected."""
    tested = [q for q in family if q.pvalue is not None]
    adjusted = dict(zip(map(id, tested), holm([q.pvalue for q in tested]))) if tested else {}
    return [Verdict(q, adjusted.get(id(q))) for q in family]


def describe(v: Verdict) -> str:
    """'wins' / 'loses' when the question survives the correction, else 'no difference shown'."""
    if not v.survives:
        return "no difference shown"
    return "wins" if v.question.interval.mean > 0 else "loses"


# ----------------------------------------------------------------------------------------------------- the page


def budget_section(rows: Sequence[Row], threshold: float, chosen: int | None, steps: list) -> tuple[list[str], int]:
    """The rule, every control's change on doubling (`converged_budget`'s), and the budget the verdicts use: the
    chosen one, else the largest (provisional)."""
    lines = [
        "## Recovery budget",
        "",
        f"Rule: the verdicts use the smallest budget B at which every control's mean (over its seeds) moves by "
        f"less than {threshold} points when B doubles. Controls: plain random and every matched control.",
        "",
    ]
    if steps:
        lines += ["| network | control | kept | B (steps) | mean at B | change at 2B |", "|---|---|---|---|---|---|"]
        lines += [f"| {n} | {m} | {k} | {b} | {mean:.2f} | {change:+.2f} |" for n, m, k, b, mean, change in steps]
        lines.append("")
    if chosen is None:
        largest = max(budgets(rows), default=None)
        lines.append(f"No budget of the ladder meets the rule yet: the questions below are shown at the largest "
                     f"budget, {largest} steps, and are **provisional**.")  # fmt: skip
        return lines + [""], largest
    lines.append(f"Verdict budget: **{chosen} steps** of 128 images.")
    return lines + [""], chosen


def questions_section(verdicts: Sequence[Verdict], budget: int) -> list[str]:
    family = sum(v.adjusted is not None for v in verdicts)
    lines = ["## Designed questions", "",
             f"Paired by seed (= backbone) at {budget} steps: method minus reference, accuracy points, mean ± 95 % "
             f"t-interval (uncorrected). Family: the {family} questions with ≥ 2 seeds, Holm-Bonferroni at 0.05; "
             "**bold** = survives the correction.", "",
             "| network | method | reference | kept | seeds | difference | p | Holm p | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for v in verdicts:
        q = v.question
        p = "–" if q.pvalue is None else f"{q.pvalue:.3f}"
        adj = "–" if v.adjusted is None else f"{v.adjusted:.3f}"
        diff, word = q.interval.format(signed=True), describe(v)
        if v.survives:
            diff, word = f"**{diff}**", f"**{word}**"
        kept = "its own" if q.kept is None else str(q.kept)
        lines.append(f"| {q.network} | {q.method} | {q.reference} | {kept} | {len(q.differences)} | {diff} | {p} | "
                     f"{adj} | {word} |")  # fmt: skip
    return lines + [""]


def findings_section(verdicts: Sequence[Verdict], num_rows: int, budget: int, provisional: bool) -> list[str]:
    """At most 12 survivors, each citing its row of the questions table."""
    family = [v for v in verdicts if v.adjusted is not None]
    survivors = [v for v in family if v.survives]
    state = " (provisional: the budget rule is not met yet)" if provisional else ""
    lines = [
        "## Findings",
        "",
        f"{len(survivors)} of the {len(family)} designed questions survive Holm at 0.05, at {budget} steps{state}; "
        f'rows: {num_rows} (`results/verdicts.md`, "Designed questions").',
        "",
    ]
    for v in survivors[:12]:
        q = v.question
        at = "at the depth it picked" if q.kept is None else f"at {q.kept} kept"
        lines.append(
            f"- {q.network}: `{q.method}` {describe(v)} against `{q.reference}` {at}: "
            f"{q.interval.format(signed=True)} points over {len(q.differences)} seeds (Holm p {v.adjusted:.3f})."
        )
    if len(survivors) > 12:
        lines.append(f"- … and {len(survivors) - 12} more in the table.")
    return lines + [""]


def curve_section(rows: Sequence[Row], budget: int) -> list[str]:
    grid = cells(rows)
    lines = [
        "## Accuracy against depth",
        "",
        "Mean ± 95 % t-interval over seeds (n), test accuracy after each budget; columns are the depths *kept*.",
        "",
    ]
    for net in sorted({k[0] for k in grid}):
        depths = sorted({k[2] for k in grid if k[0] == net}, reverse=True)
        methods = sorted({k[1] for k in grid if k[0] == net})
        for b in sorted({b for c in grid.values() if c.network == net for b in c.acc}):
            mark = " (verdict budget)" if b == budget else ""
            lines += [f"### {net}, {b} steps{mark}", "", "| method | " + " | ".join(map(str, depths)) + " |",
                      "|---|" + "---|" * len(depths)]  # fmt: skip
            for m in methods:
                row = []
                for d in depths:
                    acc = grid[(net, m, d)].acc.get(b, {}) if (net, m, d) in grid else {}
                    row.append(f"{t_interval(list(acc.values())).format()} ({len(acc)})" if acc else "")
                if any(row):
                    lines.append(f"| {m} | " + " | ".join(row) + " |")
            lines.append("")
    return lines


def plot_curves(rows: Sequence[Row], budget: int, stem: str) -> list[str]:
    """One figure per network: accuracy at `budget` against MACs reduction, a line per method; written as
    <stem>_<network>.png; returns the file names."""
    from sglp.experiment.plots import plot_curve

    grid = cells(rows)
    written = []
    for net in sorted({k[0] for k in grid}):
        series: dict[str, tuple[list[float], list[float], list[float]]] = {}
        for (n, m, _), cell in sorted(grid.items(), key=lambda kv: kv[0][2]):
            acc = cell.acc.get(budget, {})
            if n != net or not acc or not cell.macs:
                continue
            xs, ys, sd = series.setdefault(m, ([], [], []))
            iv = t_interval(list(acc.values()))
            xs.append(sum(cell.macs.values()) / len(cell.macs))
            ys.append(iv.mean)
            sd.append(0.0 if iv.n < 2 else iv.half_width)
        if series:
            path = plot_curve(
                series,
                f"{stem}_{net}.png",
                "MACs reduction (%)",
                f"test accuracy (%) after {budget} steps",
                title=f"{net}: mean ± 95 % interval over seeds",
            )
            written.append(path.name)
    return written


def render(rows: Sequence[Row], source: str, command: str, threshold: float = 0.3, plot_stem: str | None = None) -> str:
    """The verdict page in Markdown (figures written beside it when `plot_stem` is given)."""
    lines = [
        "# Verdicts: methods compared like with like",
        "",
        f"Rendered by `{command}` from `{source}`; the grid is `make verdicts` (`configs/experiment/verdicts.yaml`). "
        "Rows count at the depth they kept; each method meets its own controls (sglp/experiment/verdicts.py states the "
        "rules).",
        "",
    ]
    if not rows:
        return "\n".join(lines + ["## Findings", "", "No rows yet: `make verdicts` runs the grid.", ""])
    lines += provenance_lines(rows) + [""]
    chosen, steps = converged_budget(rows, threshold)
    budget_lines, budget = budget_section(rows, threshold, chosen, steps)
    verdicts = holm_verdicts(questions(rows, budget))
    lines += budget_lines
    lines += findings_section(verdicts, len(rows), budget, provisional=chosen is None)
    lines += questions_section(verdicts, budget)
    if plot_stem:
        lines += [f"![{name}]({name})" for name in plot_curves(rows, budget, plot_stem)] + [""]
    lines += curve_section(rows, budget)
    return "\n".join(lines)
