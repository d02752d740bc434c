"""Paper tables from saved result rows: our numbers beside the paper's, and the difference.

A table is a folder under `experiments/` with two files:

- `paper.csv`: the paper's rows, typed from the paper once. Match columns (e.g. `experiment`, `method`,
  `units_kept`) say which of our rows reproduce a paper row; `paper_method` is the paper's name for it; an
  empty `method` marks a method we do not implement; the remaining columns are the paper's numbers.
- `table.yaml`: `title`, `source`, `experiments` (the configs/experiment names that fill it), `match`
  (the match columns), `columns` (each `{name, row, paper}`: a heading, the row column or an arithmetic
  expression over row columns, the paper.csv column), optional `extra` (our columns only) and `plot`; `runs` and
  `cpu_runs`: the `python run.py -m` override lists that make the rows (`make table-<folder>[-cpu]`).

Rows of several seeds are averaged (mean ± std). Nothing here is typed in: our side comes from the rows.
"""

from __future__ import annotations

import ast
import csv
import functools
import math
import operator
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STAND_IN_SUFFIX = "_cpu"
DENSE = "(dense)"  # paper.csv method of the unpruned model's line: our value is each column's `dense`


@dataclass
class Column:
    """One compared quantity: heading, our value (row column or expression over row columns), paper column."""

    name: str
    row: str
    paper: str | None = None
    digits: int = 2
    diff: bool = True  # show ours - paper
    dense: str | None = None  # the unpruned model's value, for the paper's "(dense)" line
    optional: bool = False  # some runs of the table do not produce it (shown as "–" there)
    interval: bool = False  # ours as "mean [95 % t-interval]" over the line's runs instead of "mean ± std"


@dataclass
class TableSpec:
    title: str
    experiments: list[str]
    match: list[str]
    columns: list[Column]
    extra: list[Column] = field(default_factory=list)
    source: str = ""
    notes: str = ""
    plot: dict[str, Any] | None = None
    runs: list[str] = field(default_factory=list)  # `make table-<folder>`: one `run.py -m <overrides>` each
    cpu_runs: list[str] = field(default_factory=list)  # `make table-<folder>-cpu`: the CPU stand-in's
    cpu_needs: list[str] = field(default_factory=list)  # make targets the stand-in needs first (e.g. data-llm)
    status: str = ""  # what the index of tables says beyond what the files show (e.g. "radio data not available here")

    def all_columns(self) -> list[Column]:
        return [*self.columns, *self.extra]


def table_folder(name: str, experiments: str | Path = "experiments") -> Path:
    """The experiments/ folder of a table from its folder name (`sglp_table1`) or its short name (`table1`,
    `layerprune-table2`, `fig2a`)."""
    experiments = Path(experiments)
    for candidate in (name, name.replace("-", "_"), "sglp_" + name.replace("-", "_")):
        if (experiments / candidate / "paper.csv").exists():
            return experiments / candidate
    known = sorted(p.name for p in experiments.iterdir() if (p / "paper.csv").exists())
    raise FileNotFoundError(f"no table {name!r} under {experiments}/: choose one of {', '.join(known)}")


def load_spec(folder: str | Path) -> tuple[TableSpec, list[dict[str, str]]]:
    """The table's spec and the paper's rows from `folder` (table.yaml + paper.csv)."""
    from omegaconf import OmegaConf

    folder = Path(folder)
    raw = OmegaConf.to_container(OmegaConf.load(folder / "table.yaml"), resolve=True)
    spec = TableSpec(
        title=raw["title"],
        experiments=list(raw["experiments"]),
        match=list(raw["match"]),
        columns=[Column(**c) for c in raw["columns"]],
        extra=[Column(**c) for c in raw.get("extra", [])],
        source=raw.get("source", ""),
        notes=raw.get("notes", ""),
        plot=raw.get("plot"),
        runs=list(raw.get("runs") or []),
        cpu_runs=list(raw.get("cpu_runs") or []),
        cpu_needs=list(raw.get("cpu_needs") or []),
        status=raw.get("status", ""),
    )
    return spec, read_csv(folder / "paper.csv")


def short_name(folder: str) -> str:
    """The make target's short name of a table folder: sglp_table1 -> table1, layerprune_table2 ->
    layerprune-table2 (the Makefile's rule)."""
    return folder.removeprefix("sglp_") if folder.startswith("sglp_") else folder.replace("_", "-", 1)


def tables_index(experiments: str | Path, results: str | Path) -> str:
    """The index of paper tables as a Markdown table, from each folder's table.yaml and the pages in `results`:
    its make targets, the experiment configs that fill it, and where its rows stand (a CPU stand-in page, GPU rows).
    SGLP's tables first, then LayerPrune's, each in folder order."""
    experiments, results = Path(experiments), Path(results)
    folders = sorted((p for p in experiments.iterdir() if (p / "table.yaml").exists()),
                     key=lambda p: (not p.name.startswith("sglp_"), p.name))  # fmt: skip
    lines = ["| folder | make target | experiment configs | status |", "|---|---|---|---|"]
    for folder in folders:
        spec, _ = load_spec(folder)
        name = short_name(folder.name)
        targets = f"`{name}`" + (f", `{name}-cpu`" if spec.cpu_runs else "")
        configs = ", ".join(f"`{e}`" for e in spec.experiments)
        cpu = results / f"{folder.name}{STAND_IN_SUFFIX}.md"
        gpu = results / f"{folder.name}.md"
        status = [spec.status] if spec.status else []
        status.append(f"CPU stand-in: `results/{cpu.name}`" if cpu.exists() else "no CPU stand-in rows")
        status.append(f"GPU rows: `results/{gpu.name}`" if gpu.exists() else "GPU: never run")
        lines.append(f"| `{folder.name}` | {targets} | {configs} | {'; '.join(status)} |")
    return "\n".join(lines)


def read_csv(path: str | Path) -> list[dict[str, str]]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# Method labels of rows written before the labels said which SGLP ran: what those runs were.
LABEL_ALIASES = {
    "SGLP": "SGLP (repo defaults)",
    "SGLP (paper rules)": "SGLP (row-sum segments, largest GradNorm; unbiased CKA, fixed-size search)",
}


def current_label(label: str) -> str:
    """A row's method label as it reads today: LABEL_ALIASES, and the strategy's old name `sglp` in unlabelled rows
    (`sglp/none/l1` -> `one-shot/l1`, `sglp/fisher/gradnorm` -> `segmented/fisher/gradnorm`)."""
    label = LABEL_ALIASES.get(label, label)
    if label.startswith("sglp/none/"):
        return "one-shot/" + label.removeprefix("sglp/none/")
    if label.startswith("sglp/"):
        return "segmented/" + label.removeprefix("sglp/")
    return label


def read_rows(paths: Iterable[str | Path]) -> list[dict[str, str]]:
    """Result rows of several CSV files (missing files give none), old method labels renamed (current_label)."""
    rows = [r for p in paths for r in read_csv(p)]
    for r in rows:
        r["method"] = current_label(r.get("method", ""))
    return rows


def as_number(v: Any) -> float | None:
    """A float from a cell, or None for empty / non-numeric cells ("inf" counts as a number)."""
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


# Quantities computed from a row's columns, usable wherever a row column is.
DERIVED = {"units_removed": "units_total - units_kept"}


class ColumnError(ValueError):
    """A table column names a row column that no row has, or is not an arithmetic expression."""


_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}  # fmt: skip


def parse_expression(expr: str) -> ast.expr:
    """The AST of a column expression: numbers, row column names, + - * / ** and parentheses only."""
    expr = DERIVED.get(expr, expr)
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError as e:
        raise ColumnError(f"column {expr!r} is not an arithmetic expression over row columns ({e.msg})") from None
    for node in ast.walk(tree):
        if not isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Name, ast.Constant, ast.Load, *_OPERATORS)):
            raise ColumnError(f"column {expr!r}: only numbers, row columns and + - * / ** are allowed")
    return tree


def expression_names(expr: str) -> set[str]:
    """The row columns a column expression reads."""
    return {n.id for n in ast.walk(parse_expression(expr)) if isinstance(n, ast.Name)}


def row_value(row: Mapping[str, Any], expr: str) -> float | None:
    """A row column, or an arithmetic expression over the row's numeric columns (e.g. 'a / b * 100'); None when a
    column it reads is missing, empty or not a number in this row, or on division by zero. A name that no row of
    the table has is a typo: check_columns (run by build_lines) fails on it."""
    if expr in row:
        return as_number(row[expr])

    def value(node: ast.expr) -> float | None:
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return as_number(row.get(node.id))
        if isinstance(node, ast.UnaryOp):
            v = value(node.operand)
            return None if v is None else _OPERATORS[type(node.op)](v)
        a, b = value(node.left), value(node.right)
        if a is None or b is None:
            return None
        try:
            return float(_OPERATORS[type(node.op)](a, b))
        except ZeroDivisionError:
            return None

    return value(parse_expression(expr))


def check_columns(spec: TableSpec, rows: Sequence[Mapping[str, Any]]) -> None:
    """ColumnError naming every column expression that reads a name no row has (a typo fails loudly instead of
    rendering as "–"). Columns marked `optional` (e.g. hub tasks a CPU stand-in does not run) are exempt."""
    known = {k for r in rows for k in r}
    problems = []
    for c in spec.all_columns():
        if c.optional:
            continue
        for expr in filter(None, (c.row, c.dense)):
            missing = sorted(expression_names(expr) - known)
            if missing:
                problems.append(f"{c.name!r} ({expr}) reads {', '.join(missing)}")
    if problems:
        raise ColumnError("table columns name row columns that no row has: " + "; ".join(problems))


def same(a: Any, b: Any) -> bool:
    """Cells equal as numbers when both are numeric, else as stripped strings."""
    x, y = as_number(a), as_number(b)
    if x is not None and y is not None:
        return math.isclose(x, y)
    return str(a).strip() == str(b).strip()


def is_stand_in(experiment: str) -> bool:
    """A CPU stand-in of a paper table's experiment is named after it with STAND_IN_SUFFIX."""
    return experiment.endswith(STAND_IN_SUFFIX)


def paper_experiment(experiment: str, stand_in: bool) -> str:
    return experiment[: -len(STAND_IN_SUFFIX)] if stand_in and experiment.endswith(STAND_IN_SUFFIX) else experiment


def matching(rows: Iterable[Mapping[str, Any]], key: Mapping[str, Any], match: Sequence[str], stand_in: bool) -> list:
    """Our rows whose match columns equal `key`'s (a stand-in row's experiment loses its `_cpu` suffix)."""
    out = []
    for r in rows:
        ours = {**r, "experiment": paper_experiment(str(r.get("experiment", "")), stand_in)}
        if r.get("units_kept_target") not in (None, ""):  # the job configured for a depth reproduces its paper row,
            ours["units_kept"] = r["units_kept_target"]  # even where the search kept fewer (the `units kept` column)
        if all(same(ours[m] if m in ours else row_value(ours, m), key.get(m, "")) for m in match):
            out.append(r)
    return out


def curve(rows: Iterable[Mapping[str, Any]], x: str, y: str) -> tuple[list[float], list[float], list[float]]:
    """Rows grouped by the value of `x`: the sorted x values, the mean and the (population) std of `y` at each."""
    by_x: dict[float, list[float]] = {}
    for r in rows:
        xv, yv = row_value(r, x), row_value(r, y)
        if xv is not None and yv is not None:
            by_x.setdefault(xv, []).append(yv)
    xs = sorted(by_x)
    return xs, [statistics.mean(by_x[v]) for v in xs], [statistics.pstdev(by_x[v]) for v in xs]


def mean_std(values: Sequence[float], digits: int = 2) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return fmt(values[0], digits)
    return f"{fmt(statistics.mean(values), digits)} ± {fmt(statistics.stdev(values), digits)}"


def mean_interval(values: Sequence[float], digits: int = 2) -> str:
    """'mean [low, high]': the Student-t 95 % interval of the mean over runs (one run: the value alone)."""
    from sglp.core.stats import t_interval

    if len(values) < 2:
        return mean_std(values, digits)
    i = t_interval(values)
    return f"{fmt(i.mean, digits)} [{fmt(i.low, digits)}, {fmt(i.high, digits)}]"


def fmt(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "–"
    if math.isinf(v):
        return "inf"
    if abs(v) >= 1e5 and float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:.{digits}f}"


@dataclass
class TableLine:
    """One line of the rendered table: the paper's row (or None) and our matching rows."""

    label: str
    key: dict[str, Any]
    paper: dict[str, str] | None
    ours: list[Mapping[str, Any]]
    implemented: bool = True
    dense: bool = False


def build_lines(spec: TableSpec, paper: list[dict[str, str]], rows: list[Mapping[str, Any]], stand_in: bool):
    """Pair every paper row with our runs; our runs that reproduce no paper row follow, under their method."""
    if rows:
        check_columns(spec, rows)
    lines, used = [], set()
    for p in paper:
        implemented = "method" not in spec.match or bool(p.get("method", "").strip())
        dense = p.get("method") == DENSE
        match = [m for m in spec.match if m != "method"] if dense else spec.match
        ours = matching(rows, p, match, stand_in) if implemented else []
        if not dense:
            used.update(id(r) for r in ours)
        lines.append(TableLine(p.get("paper_method") or p.get("method", ""), p, p, ours, implemented, dense))
    rest: dict[tuple, list] = {}
    for r in rows:
        if id(r) not in used:
            key = tuple(str(r[m]) if m in r else fmt(row_value(r, m), 0) for m in spec.match)
            rest.setdefault(key, []).append(r)
    for key, rs in rest.items():
        k = dict(zip(spec.match, key))
        k["experiment"] = paper_experiment(k.get("experiment", ""), stand_in)
        lines.append(TableLine(f"{rs[0].get('method', '')} (ours only)", k, None, rs))
    return lines


def line_cells(spec: TableSpec, line: TableLine) -> dict[str, str]:
    """The rendered cells of one line: setting, ours / paper / Δ per column, our extras, runs."""
    cells: dict[str, str] = {"method": line.label}
    for m in spec.match:
        if m not in ("experiment", "method"):
            cells[m] = str(line.key.get(m, ""))
    missing = (line.paper or {}).get("note") or "not implemented"

    def values(c: Column) -> list[float]:
        expr = c.dense if line.dense else c.row
        if not expr:
            return []
        return [v for v in (row_value(r, expr) for r in line.ours) if v is not None]

    for i, c in enumerate(spec.columns):
        ours = values(c)
        raw = (line.paper or {}).get(c.paper or "", "") if c.paper else ""
        pv = as_number(raw)
        if line.dense:  # the same unpruned model in every run: one value
            ours = ours[:1]
        show = mean_interval if c.interval else mean_std
        cells[f"{c.name} ours"] = show(ours, c.digits) if line.implemented else missing if i == 0 else "–"
        cells[f"{c.name} paper"] = raw if raw and pv is None else fmt(pv, c.digits) if pv is not None else "–"
        if c.diff:
            diff = statistics.mean(ours) - pv if ours and pv is not None and math.isfinite(pv) else None
            cells[f"{c.name} Δ"] = f"{diff:+.{c.digits}f}" if diff is not None else "–"
    for c in spec.extra:
        ours = values(c)
        text = sorted({str(r.get(c.row)) for r in line.ours if r.get(c.row) not in (None, "")})
        cells[c.name] = mean_std(ours[:1] if line.dense else ours, c.digits) if ours or not text else "; ".join(text)
    cells["runs"] = str(len(line.ours)) if line.implemented else "–"
    return cells


def provenance_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Where and how the rows ran, from the rows' own provenance columns (rows without them are counted)."""
    cpus = sorted({str(r["cpu"]) for r in rows if r.get("cpu")})
    threads = sorted({int(float(r["threads"])) for r in rows if as_number(r.get("threads")) is not None})
    loads = [as_number(r.get("load_start")) for r in rows if as_number(r.get("load_start")) is not None]
    dates = sorted(str(r["start_utc"])[:10] for r in rows if r.get("start_utc"))
    hours = sum(as_number(r.get("seconds_total")) or 0.0 for r in rows) / 3600
    gpus = sorted({str(r["gpu"]) for r in rows if r.get("gpu")})
    lines = [f"- {len(rows)} rows, {hours:.1f} hours of jobs (the rows' `seconds_total`)."]
    if cpus:
        load = f"; load average at start {min(loads):.1f}-{max(loads):.1f}" if loads else ""
        lines.append(
            f"- machine: {'; '.join(cpus)}; {'GPU ' + '; '.join(gpus) if gpus else 'no GPU'}; torch threads "
            f"{', '.join(map(str, threads))}{load}; rows started {dates[0]} to {dates[-1]} (UTC)."
        )
    if missing := sum(1 for r in rows if not r.get("cpu")):
        lines.append(f"- {missing} rows carry no machine provenance.")
    return lines


def render_markdown(
    spec: TableSpec, lines: list[TableLine], stand_in: bool, command: str = "", rows_file: str = ""
) -> str:
    """The table as Markdown, one block per experiment, with provenance and the stand-in notice."""
    out = [f"# {spec.title}" + (" — CPU stand-in" if stand_in else ""), ""]
    if stand_in:
        out += [
            "**CPU stand-in, not the paper's setting**: the same methods and columns on a small model and dataset "
            "that run on 2 CPU cores (see the experiment configs). The paper's numbers are shown for orientation; "
            "Δ compares different settings and is not a reproduction error.",
            "",
        ]
    if command:
        out.append(f"Made by `{command}` from the saved rows in `{rows_file}` (nothing typed in).")
    if spec.source:
        out.append(f"Paper numbers: {spec.source}.")
    if spec.notes:
        out += ["", spec.notes.strip()]
    out.append("")
    blocks: dict[str, list[TableLine]] = {}
    for line in lines:
        blocks.setdefault(str(line.key.get("experiment", "")), []).append(line)
    for experiment, block in blocks.items():
        if len(blocks) > 1 or experiment:
            out += [f"## {experiment}" + (STAND_IN_SUFFIX if stand_in else ""), ""]
        cells = [line_cells(spec, line) for line in block]
        head = list(cells[0])
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        out += ["| " + " | ".join(c[h] for h in head) + " |" for c in cells]
        out.append("")
    if ours := [r for line in lines for r in line.ours]:
        out += ["Where the rows ran (their own provenance columns):", "", *provenance_lines(ours), ""]
    return "\n".join(out)


def write_csv(spec: TableSpec, lines: list[TableLine], path: str | Path) -> None:
    cells = [{"experiment": str(line.key.get("experiment", "")), **line_cells(spec, line)} for line in lines]
    fields: list[str] = []
    for c in cells:
        fields += [k for k in c if k not in fields]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(cells)


COST_COLUMNS = {"flops": "macs_reduction_pct", "params": "params_reduction_pct"}  # paper.csv -> our row column


def cost_rows(folder: str | Path) -> list[dict[str, str]]:
    """The paper rows of a table that report a FLOPs or parameter reduction (paper.csv columns `flops`, `params`).
    Read once per process and file version (a sweep's pre-flight asks for every table at every job)."""
    folder = Path(folder).resolve()
    stamp = tuple(f.stat().st_mtime_ns if f.exists() else None for f in (folder / "table.yaml", folder / "paper.csv"))
    return [dict(p) for p in _cost_rows(folder, stamp)]


@functools.lru_cache(maxsize=256)
def _cost_rows(folder: Path, stamp: tuple) -> tuple[dict[str, str], ...]:
    _, paper = load_spec(folder)
    return tuple(p for p in paper if any(as_number(p.get(c)) is not None for c in COST_COLUMNS))


def paper_cost_rows_for(
    experiments_dir: str | Path, experiment: str, method: str, units_kept: int | None = None
) -> list[tuple[str, dict[str, str]]]:
    """(table folder name, paper row) of every paper row with cost columns that the job (experiment, method label,
    units kept; None = any depth) reproduces. A stand-in (`_cpu`) runs another architecture: no cost row."""
    out = []
    for folder in sorted(Path(experiments_dir).glob("*/table.yaml")):
        for p in cost_rows(folder.parent):
            if (
                p.get("experiment") == experiment
                and p.get("method") == method
                and (units_kept is None or as_number(p.get("units_kept")) == units_kept)
            ):
                out.append((folder.parent.name, p))
    return out
