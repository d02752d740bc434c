"""scripts/compare_table.py on synthetic grid rows whose intervals are computed here by hand (textbook t-interval
with the printed t-table quantile t_{0.975, 2} = 4.303): cells, paired differences, bold/verdicts, budget curves."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("compare_table", ROOT / "scripts" / "compare_table.py")
table = importlib.util.module_from_spec(spec)
sys.modules["compare_table"] = table
spec.loader.exec_module(table)

T_975_2 = 4.303  # t-table, 2 degrees of freedom
CONTROL = table.CONTROL


def row(method: str, seed: int, after: float, before: float = 50.0, keep: int = 14, **extra) -> dict:
    return {"model": "resnet56", "dataset": "fashion_mnist", "method": method, "seed": str(seed),
            "units_kept_target": str(keep), "units_kept": str(keep), "units_total": "27",
            "pruned_acc_before_ft": str(before), "pruned_acc": str(after), "macs_reduction_pct": "48.0",
            "seconds_prune": "1.0", "seconds_total": "3600", "removed": "[1, 2]", "finetune_epochs": "1",
            "finetune_max_steps_per_epoch": "150", **{k: str(v) for k, v in extra.items()}}  # fmt: skip


def by_hand(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95 % t-interval of three values."""
    m = sum(values) / 3
    s = math.sqrt(sum((v - m) ** 2 for v in values) / 2)
    return m, T_975_2 * s / math.sqrt(3)


def line_of(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


@pytest.fixture
def grid_rows() -> list[dict]:
    control = [88.0, 88.6, 87.5]
    rows = [row(CONTROL, s, a, before=20.0 + s) for s, a in enumerate(control)]
    rows += [
        row("SGLP (repo defaults)", s, a + d, before=50.0 + s) for s, (a, d) in enumerate(zip(control, [1.0, 1.2, 0.9]))
    ]
    rows += [row("Random", s, a + d, before=10.0) for s, (a, d) in enumerate(zip(control, [2.0, -3.0, 0.5]))]
    rows += [row("L1", 0, 80.0)]  # one seed: no interval, never bold
    return rows


def test_cells_and_paired_differences_match_the_textbook_interval(grid_rows):
    text = table.render(grid_rows, "rows.csv", "make compare", CONTROL, None)
    sglp = line_of(text, "| `SGLP (repo defaults)`")
    m, h = by_hand([89.0, 89.8, 88.4])
    assert f"{m:.2f} ± {h:.2f}" in sglp  # the cell: mean ± half-width over seeds
    dm, dh = by_hand([1.0, 1.2, 0.9])
    assert f"**+{dm:.2f} ± {dh:.2f}**" in sglp  # paired Δ after FT: excludes 0, bold
    assert "**+30.00 ± 0.00**" in sglp  # paired Δ before FT: 30 points at every seed
    rnd = line_of(text, "| `Random`")
    rm, rh = by_hand([2.0, -3.0, 0.5])
    assert f"{rm:+.2f} ± {rh:.2f}" in rnd and "**" + f"{rm:+.2f}" not in rnd  # covers 0: not bold
    assert "80.00" in line_of(text, "| `L1`") and "(1 seed)" in line_of(text, "| `L1`")
    assert "**" not in line_of(text, "| `L1`")


def test_verdicts_answer_the_designed_questions_only_from_intervals(grid_rows):
    text = table.render(grid_rows, "rows.csv", None, CONTROL, None)
    search = line_of(text, "| in-segment search, repo defaults")
    dm, dh = by_hand([1.0, 1.2, 0.9])
    assert f"**wins** +{dm:.2f} [+{dm - dh:.2f}, +{dm + dh:.2f}], 3 seeds" in search
    segments = line_of(text, "| segmentation")  # control - Random: +10, +11, +12 before FT; covers 0 after FT
    assert "**wins** +11.00" in segments and "no difference shown" in segments
    assert "in-segment search, as the paper states it" not in text  # SGLP (paper) has no rows: no question row
    assert "- 14 kept, after FT: above the control: `SGLP (repo defaults)` +1.03; below: none." in text
    assert (
        "- `SGLP (repo defaults)`, 14 kept, after FT: better than `Random in SGLP segments` +1.03; worse than "
        "none; no difference shown against `Random` +1.20." in text
    )  # SGLP - Random: -1.0, +4.2, +0.4
    assert (
        "- `SGLP (repo defaults)`, 14 kept, before FT: better than `Random` +41.00, `Random in SGLP segments` "
        "+30.00; worse than none" in text
    )
    assert "rest on 8 paired intervals" in text  # vs control: SGLP, Random; SGLP vs both; x2 stages; L1: 1 seed

    worse = [dict(r, pruned_acc=str(float(r["pruned_acc"]) - 2.5)) if r["method"] == "SGLP (repo defaults)" else r
             for r in grid_rows]  # fmt: skip
    assert "**loses** -1.47" in line_of(table.render(worse, "r", None, CONTROL, None), "| in-segment search, repo")


def test_a_method_gets_verdict_lines_only_at_depths_it_ran(grid_rows):
    deeper = [row(m, s, 80.0 + s, keep=8) for m in (CONTROL, "Random") for s in range(3)]
    text = table.render(grid_rows + deeper, "rows.csv", None, CONTROL, None)
    assert "- 8 kept, after FT: above the control: none; below: none." in text  # the depth is on the page
    assert "- `SGLP (repo defaults)`, 14 kept, after FT:" in text
    assert "`SGLP (repo defaults)`, 8 kept" not in text  # not run at 8 kept: no line of "none"s


def test_a_method_with_one_seed_at_a_depth_says_it_has_no_interval(grid_rows):
    one = [row("SGLP (paper)", 0, 70.0, before=10.0, keep=14)]
    text = table.render(grid_rows + one, "rows.csv", None, CONTROL, None)
    line = line_of(text, "- `SGLP (paper)`, 14 kept, after FT:")
    assert line == "- `SGLP (paper)`, 14 kept, after FT: 1 seed, no method shares two with it: no interval yet."
    assert "(1 seed: no interval)" in line_of(text, "| in-segment search, as the paper states it")


def test_a_method_that_kept_fewer_units_than_its_target_says_so(grid_rows):
    short = [dict(r, units_kept="13" if r["seed"] == "1" else "14") if r["method"] == "Random" else r
             for r in grid_rows]  # fmt: skip
    text = table.render(short, "rows.csv", None, CONTROL, None)
    assert line_of(text, "| `Random` | 0,1,2 | 14,13,14 |")
    assert line_of(text, f"| `{CONTROL}` (control) | 0,1,2 | 14 |")
    assert "where a method kept other than 14" in text
    assert "kept other than" not in table.render(grid_rows, "rows.csv", None, CONTROL, None)


def test_a_difference_is_paired_over_shared_seeds_only(grid_rows):
    rows = [r for r in grid_rows if not (r["method"] == CONTROL and r["seed"] == "2")]
    text = table.render(rows, "rows.csv", None, CONTROL, None)
    search = line_of(text, "| in-segment search, repo defaults")
    m = (1.0 + 1.2) / 2
    h = 12.706 * math.sqrt(((1.0 - m) ** 2 + (1.2 - m) ** 2) / 1) / math.sqrt(2)  # t_{0.975, 1} = 12.706
    assert f"no difference shown +{m:.2f} [{m - h:+.2f}, {m + h:+.2f}], 2 seeds" in search


def test_budget_curves_start_at_zero_and_include_the_recipe(grid_rows):
    rows = [dict(r, pruned_acc_ft50=str(float(r["pruned_acc"]) - 5), pruned_acc_ft600=str(float(r["pruned_acc"]) + 1))
            for r in grid_rows if r["method"] in (CONTROL, "SGLP (repo defaults)")]  # fmt: skip
    text = table.render(rows, "rows.csv", None, CONTROL, None)
    assert "| method | seeds | 0 steps (%) | 50 steps (%) | 150 steps (%) | 600 steps (%) |" in text
    sglp = line_of(text, "| `SGLP (repo defaults)` | 0,1,2 | 51.00")
    dm, dh = by_hand([1.0, 1.2, 0.9])
    assert sglp.count(f"**+{dm:.2f} ± {dh:.2f}**") == 3  # Δ at 50, 150 and 600 steps: the same offset


def test_figures_are_written_and_linked(grid_rows, tmp_path):
    rows = grid_rows + [dict(r, units_kept_target="8", units_kept="8") for r in grid_rows]
    rows = [dict(r, pruned_acc_ft50="60.0") if r["units_kept_target"] == "8" else r for r in rows]
    text = table.render(rows, "rows.csv", None, CONTROL, tmp_path / "cmp")
    for name in ("cmp_keep14.png", "cmp_keep8.png", "cmp_diff_keep14.png", "cmp_diff_keep8.png",
                 "cmp_budgets_keep8.png"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 10_000 and f"]({name})" in text
    assert not (tmp_path / "cmp_budgets_keep14.png").exists()  # no budgets at 14 kept
