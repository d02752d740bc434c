"""Paper tables and sweep summaries from result rows, checked against hand-computed values."""

import csv
import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from sglp.experiment.sweep import parse_overrides, summarize_sweep, varying_settings
from sglp.experiment.tables import Column, TableSpec, build_lines, line_cells, render_markdown, row_value

ROOT = Path(__file__).resolve().parents[1]


def spec(**kw) -> TableSpec:
    base = dict(
        title="T",
        experiments=["exp"],
        match=["experiment", "method", "units_removed"],
        columns=[Column("Acc", "pruned_acc", "acc"), Column("Params", "params_reduction_pct", "params", 1)],
        extra=[Column("runs cost", "search_seconds / search_evaluated")],
    )
    return TableSpec(**{**base, **kw})


def row(method: str, acc: float, seed: int, kept: int = 10, experiment: str = "exp") -> dict:
    return {"experiment": experiment, "method": method, "seed": str(seed), "units_total": "12",
            "units_kept": str(kept), "pruned_acc": str(acc), "params_reduction_pct": "40.0",
            "search_seconds": "6", "search_evaluated": "3", "dense_acc": "95"}  # fmt: skip


PAPER = [
    {"experiment": "exp", "method": "SGLP", "units_removed": "2", "paper_method": "Ours", "acc": "93.0",
     "params": "41"},
    {"experiment": "exp", "method": "", "units_removed": "", "paper_method": "GAL", "acc": "92.0", "params": "12",
     "note": "filter pruning: not implemented"},
    {"experiment": "exp", "method": "Random", "units_removed": "2", "paper_method": "Random", "acc": "90",
     "params": ""},
]  # fmt: skip


def test_rows_pair_with_paper_rows_and_seeds_are_averaged():
    rows = [row("SGLP", 91.0, 0), row("SGLP", 93.0, 1), row("Random", 85.5, 0), row("Random", 80.0, 0, kept=6)]
    lines = build_lines(spec(), PAPER, rows, stand_in=False)
    cells = [line_cells(spec(), line) for line in lines]
    sglp, gal, rand, extra = cells
    mean, sd = statistics.mean([91.0, 93.0]), statistics.stdev([91.0, 93.0])
    assert sglp["Acc ours"] == f"{mean:.2f} ± {sd:.2f}" and sglp["Acc paper"] == "93.00"
    assert sglp["Acc Δ"] == f"{mean - 93.0:+.2f}" and sglp["runs"] == "2"
    assert sglp["runs cost"] == "2.00 ± 0.00"  # the expression 6 / 3, in both seeds
    assert gal["Acc ours"] == "filter pruning: not implemented" and gal["Params ours"] == "–" and gal["runs"] == "–"
    assert rand["Acc ours"] == "85.50" and rand["Params paper"] == "–" and rand["Params Δ"] == "–"
    # the run at another depth matches no paper row: listed as ours only, under its units removed
    assert extra["method"] == "Random (ours only)" and extra["units_removed"] == "6" and extra["Acc paper"] == "–"


def test_stand_in_rows_lose_the_cpu_suffix_and_are_labelled():
    rows = [row("SGLP", 88.0, 0, experiment="exp_cpu")]
    lines = build_lines(spec(), PAPER, rows, stand_in=True)
    assert [len(line.ours) for line in lines] == [1, 0, 0]
    text = render_markdown(spec(), lines, stand_in=True, command="make t-cpu", rows_file="r.csv")
    assert "CPU stand-in, not the paper's setting" in text and "`make t-cpu`" in text
    assert build_lines(spec(), PAPER, rows, stand_in=False)[0].ours == []  # without --stand-in no match


def test_dense_line_takes_each_columns_dense_value_once():
    s = spec(match=["experiment", "method"], columns=[Column("Acc", "pruned_acc", "acc", dense="dense_acc")])
    paper = [{"experiment": "exp", "method": "(dense)", "paper_method": "Dense", "acc": "96"}]
    lines = build_lines(s, paper, [row("SGLP", 91.0, 0), row("Random", 85.0, 0)], stand_in=False)
    assert line_cells(s, lines[0])["Acc ours"] == "95.00" and line_cells(s, lines[0])["Acc Δ"] == "-1.00"
    assert [line.label for line in lines[1:]] == ["SGLP (ours only)", "Random (ours only)"]  # still listed


def test_row_value_reads_columns_expressions_and_derived_quantities():
    r = row("SGLP", 91.0, 0)
    assert row_value(r, "pruned_acc") == 91.0 and row_value(r, "units_removed") == 2.0
    assert row_value(r, "search_seconds / search_evaluated * 2") == 4.0
    assert (
        row_value(r, "missing_column") is None
        and row_value({**r, "search_evaluated": "0"}, "search_seconds / search_evaluated") is None
    )


def test_column_expressions_are_arithmetic_only_and_a_typo_fails_loudly():
    from sglp.experiment.tables import ColumnError, check_columns

    r = row("SGLP", 91.0, 0)
    assert row_value(r, "-(pruned_acc - 100) ** 2") == pytest.approx(-81.0)  # Python precedence: -(x ** 2)
    for bad in ("__import__('os').getcwd()", "pruned_acc.real", "[pruned_acc][0]", "pruned_acc if 1 else 0"):
        with pytest.raises(ColumnError):
            row_value(r, bad)
    check_columns(spec(), [r])  # every column it names exists
    with pytest.raises(ColumnError, match="pruned_acc_typo"):
        check_columns(spec(columns=[Column("Acc", "pruned_acc_typo * 1", "acc")]), [r])
    check_columns(spec(columns=[Column("Acc", "pruned_acc_typo", "acc", optional=True)]), [r])  # stated optional
    with pytest.raises(ColumnError):  # build_lines runs the check: a typo never renders as "–"
        build_lines(spec(extra=[Column("x", "search_secnods / 2")]), PAPER, [r], stand_in=False)


def test_make_table_writes_markdown_csv_and_plot_and_never_an_empty_table(tmp_path):
    folder = tmp_path / "t7"
    folder.mkdir()
    (folder / "table.yaml").write_text(
        "title: T7\nexperiments: [t7]\nmatch: [experiment, calib_batch_size]\n"
        "columns:\n  - {name: Acc, row: pruned_acc, paper: acc}\n"
        "plot: {x: calib_batch_size, y: pruned_acc, paper_x: calib_batch_size, paper_y: acc}\n"
    )
    (folder / "paper.csv").write_text(
        "experiment,calib_batch_size,paper_method,acc\nt7,128,b128,93.8\nt7,256,b256,93.7\n"
    )
    cmd = [sys.executable, "scripts/make_table.py", str(folder), "--stand-in", "--rows", str(tmp_path / "rows"),
           "--out", str(tmp_path / "out")]  # fmt: skip
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0 and "no result rows" in res.stderr and not (tmp_path / "out.md").exists()
    (tmp_path / "rows").mkdir()
    with open(tmp_path / "rows" / "t7_cpu.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["experiment", "method", "calib_batch_size", "pruned_acc"])
        w.writeheader()
        w.writerows([{"experiment": "t7_cpu", "method": "SGLP", "calib_batch_size": b, "pruned_acc": a}
                     for b, a in [(128, 88.0), (256, 87.0), (256, 89.0)]])  # fmt: skip
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    md = (tmp_path / "out.md").read_text()
    assert "| b256 | 256 | 88.00 ± 1.41 | 93.70 | -5.70 | 2 |" in md and "![T7](out.png)" in md
    assert (tmp_path / "out.png").stat().st_size > 0
    table = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert [t["Acc ours"] for t in table] == ["88.00", "88.00 ± 1.41"]


def test_parse_overrides_keeps_list_values_and_finds_varied_settings():
    assert parse_overrides("a=1,b=[1,8,64],c=x") == {"a": "1", "b": "[1,8,64]", "c": "x"}
    rows = [{"overrides": "method=sglp,k=2"}, {"overrides": "method=sglp,k=3"}, {"overrides": "method=sglp,k=4"}]
    assert varying_settings(rows) == ["k"]


def test_sweep_summary_tabulates_every_job_and_plots_the_varied_setting(tmp_path):
    for job, (k, acc) in enumerate([(2, 80.0), (3, 82.5), (4, 81.0)]):
        d = tmp_path / f"{job}_k={k}"
        d.mkdir()
        (d / "row.json").write_text(json.dumps({"overrides": f"method=sglp,segmenter.k={k}", "method": "SGLP",
                                                "pruned_acc": acc, "units_kept": 14}))  # fmt: skip
    out = summarize_sweep(tmp_path)
    table = list(csv.DictReader(open(tmp_path / "sweep_summary.csv")))
    assert [(t["segmenter.k"], float(t["pruned_acc"])) for t in table] == [("2", 80.0), ("3", 82.5), ("4", 81.0)]
    assert out.read_text().count("| SGLP |") == 3 and (tmp_path / "sweep_summary.png").exists()
    assert summarize_sweep(tmp_path / "empty") is None


def load_make_table():
    spec = importlib.util.spec_from_file_location("make_table", ROOT / "scripts" / "make_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in (ROOT / "experiments").glob("*/table.yaml")))
def test_every_table_renders_from_its_committed_rows_or_says_there_are_none(tmp_path, folder, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert load_make_table()([f"experiments/{folder}", "--stand-in", "--out", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t.md").exists() == ("no result rows" not in capsys.readouterr().err)


def test_rows_with_old_sglp_labels_are_read_as_what_they_ran(tmp_path):
    """Rows written before the labels said which SGLP ran were this repository's defaults: read as such, so they
    never match the paper's 'SGLP (paper)' rows."""
    from sglp.experiment.tables import read_rows

    path = tmp_path / "rows.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["experiment", "method"])
        w.writeheader()
        old = ("SGLP", "Random", "sglp/none/l1", "sglp/fisher/taylor")
        w.writerows([{"experiment": "t", "method": m} for m in old])
    assert [r["method"] for r in read_rows([path, tmp_path / "missing.csv"])] == [
        "SGLP (repo defaults)",
        "Random",
        "one-shot/l1",
        "segmented/fisher/taylor",
    ]  # fmt: skip  (the generic strategy was called `sglp` before it was named `segmented`)


def test_a_job_configured_for_a_depth_matches_its_paper_row_even_if_it_kept_fewer():
    from sglp.experiment.tables import matching

    paper = {"experiment": "t", "method": "SGLP (paper)", "units_kept": "6"}
    kept_fewer = {"experiment": "t", "method": "SGLP (paper)", "units_kept": "3", "units_kept_target": "6"}
    other_job = {"experiment": "t", "method": "SGLP (paper)", "units_kept": "6", "units_kept_target": "7"}
    old_row = {"experiment": "t", "method": "SGLP (paper)", "units_kept": "6"}  # written before the target column
    match = ["experiment", "method", "units_kept"]
    assert matching([kept_fewer, other_job, old_row], paper, match, stand_in=False) == [kept_fewer, old_row]


def test_cost_rows_are_read_again_when_the_paper_file_changes(tmp_path):
    """cost_rows is cached per process: an edited paper.csv (or a copy of the table elsewhere) is read anew."""
    import os
    import shutil

    from sglp.experiment.tables import cost_rows

    folder = tmp_path / "sglp_table2"
    shutil.copytree(ROOT / "experiments" / "sglp_table2", folder)
    first = cost_rows(folder)
    assert first == cost_rows(ROOT / "experiments" / "sglp_table2") and first[1]["flops"] == "15.59"
    first[1]["flops"] = "mutated"  # callers get copies
    assert cost_rows(folder)[1]["flops"] == "15.59"
    paper = folder / "paper.csv"
    paper.write_text(paper.read_text().replace(",15.59,", ",99.99,"))
    os.utime(paper, ns=(paper.stat().st_atime_ns, paper.stat().st_mtime_ns + 1_000_000))
    assert cost_rows(folder)[1]["flops"] == "99.99"


def test_an_interval_column_shows_the_t_interval_of_the_mean():
    """[1, 2, 3]: mean 2, s = 1, t(2, 0.975) = 4.302653 (a t table), half-width 4.302653 / sqrt(3) = 2.4841."""
    from sglp.experiment.tables import mean_interval

    assert mean_interval([1.0, 2.0, 3.0]) == "2.00 [-0.48, 4.48]"
    assert mean_interval([5.0]) == "5.00"


def test_the_index_of_tables_is_rendered_from_the_folders_and_says_what_the_files_show(tmp_path):
    import re
    import shutil

    from sglp.experiment.tables import tables_index

    text = (ROOT / "experiments" / "README.md").read_text()
    block = re.search(r"<!-- tables_index:start -->\n(.*?)\n<!-- tables_index:end -->", text, re.S)
    assert block and block.group(1) == tables_index(ROOT / "experiments", ROOT / "results"), (
        "experiments/README.md's index is stale: run python scripts/update_readme.py"
    )
    experiments, results = tmp_path / "experiments", tmp_path / "results"
    shutil.copytree(ROOT / "experiments" / "layerprune_table2", experiments / "layerprune_table2")
    results.mkdir()
    line = tables_index(experiments, results).splitlines()[-1]
    assert "`layerprune-table2`, `layerprune-table2-cpu`" in line and "no CPU stand-in rows; GPU: never run" in line
    (results / "layerprune_table2_cpu.md").write_text("# page\n")
    (results / "layerprune_table2.md").write_text("# page\n")
    line = tables_index(experiments, results).splitlines()[-1]
    assert "CPU stand-in: `results/layerprune_table2_cpu.md`; GPU rows: `results/layerprune_table2.md`" in line


def test_a_table_page_says_where_its_rows_ran_from_the_rows_provenance():
    """The page renders the machine, threads, load and dates the rows record, the job hours they sum to, and how
    many rows predate provenance."""
    machine = {"cpu": "AMD EPYC", "gpu": "", "threads": "2", "seconds_total": "1800"}
    rows = [
        {**row("SGLP", 91.0, 0), **machine, "load_start": "0.4", "start_utc": "2026-12-06T10:00:00Z"},
        {**row("SGLP", 93.0, 1), **machine, "load_start": "2.5", "start_utc": "2026-12-07T01:00:00Z"},
        row("Random", 85.5, 0),  # an old row: no provenance columns
    ]
    text = render_markdown(spec(), build_lines(spec(), PAPER, rows, stand_in=False), stand_in=False)
    where = text.split("Where the rows ran")[1]
    assert "- 3 rows, 1.0 hours of jobs" in where  # (1800 + 1800) s
    assert "- machine: AMD EPYC; no GPU; torch threads 2; load average at start 0.4-2.5; rows started 2026-12-06 " \
           "to 2026-12-07 (UTC)." in where  # fmt: skip
    assert "- 1 rows carry no machine provenance." in where
    empty = render_markdown(spec(), build_lines(spec(), PAPER, [], stand_in=False), stand_in=False)
    assert "Where the rows ran" not in empty
