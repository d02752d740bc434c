"""sglp.experiment.verdicts on synthetic rows whose answers are known by hand: depth as kept, each method's own
control, the
budget rule, Holm over the family, and the page."""

import pytest
from scipy import stats

from sglp.experiment.verdicts import accuracy_at, cells, converged_budget, holm_verdicts, questions, render  # fmt: skip

LADDER = (300, 600, 1200)  # extra budgets; the recipe is 1 epoch capped at 150 steps


def row(method, seed, kept, accs, target="same", control="", net="verdicts", macs=None):
    """A result row: `accs` = accuracy at 150, 300, 600, 1200 steps (fewer: the row has fewer budgets)."""
    r = {"experiment": "verdicts", "model": net, "method": method, "seed": str(seed), "units_kept": str(kept),
         "units_kept_target": str(kept if target == "same" else target or ""), "control": control,
         "finetune_epochs": "1", "finetune_max_steps_per_epoch": "150", "pruned_acc": str(accs[0]),
         "macs_reduction_pct": str(macs if macs is not None else 100 - 3 * kept), "seconds_total": "3600"}  # fmt: skip
    for steps, acc in zip(LADDER, accs[1:]):
        r[f"pruned_acc_ft{steps}"] = str(acc)
    return r


def test_accuracy_at_reads_the_recipe_and_the_extra_budgets():
    r = row("Random", 0, 14, [80.0, 85.0, 86.0, 86.1])
    assert [accuracy_at(r, b) for b in (150, 300, 600, 1200, 2400)] == [80.0, 85.0, 86.0, 86.1, None]


def test_a_row_counts_at_the_depth_it_kept_not_its_target():
    rows = [row("SGLP", 0, 12, [70.0], target=14), row("Random", 0, 12, [60.0]), row("Random", 0, 14, [65.0])]
    grid = cells(rows)
    assert ("verdicts", "SGLP", 12) in grid and ("verdicts", "SGLP", 14) not in grid
    (q,) = questions(rows, 150)
    assert (q.reference, q.kept, q.differences) == ("Random", 12, {0: 10.0})


def test_the_budget_rule_takes_the_smallest_budget_at_which_every_control_settles():
    """Random moves 5.0, 0.2, 0.1 on each doubling; the in-segment control 4.0, 0.5, 0.1: 300 -> 600 is still 0.5 for
    the second, so the rule gives 600 (both move < 0.3 from 600 to 1200)."""
    ctrl = "SGLP · random in its segments"
    rows = []
    for seed, shift in ((0, 0.0), (1, 1.0)):
        rows.append(row("Random", seed, 14, [80 + shift, 85 + shift, 85.2 + shift, 85.3 + shift]))
        rows.append(row(ctrl, seed, 14, [81 + shift, 85 + shift, 85.5 + shift, 85.6 + shift], control="in_segments"))
    chosen, steps = converged_budget(rows, threshold=0.3)
    assert chosen == 600
    changes = {(m, b): round(c, 6) for _, m, _, b, _, c in steps}
    assert changes == {("Random", 150): 5.0, ("Random", 300): 0.2, ("Random", 600): 0.1,
                       (ctrl, 150): 4.0, (ctrl, 300): 0.5, (ctrl, 600): 0.1}  # fmt: skip
    assert converged_budget(rows, threshold=0.05)[0] is None  # never settles that tightly


def test_questions_pair_each_method_with_its_own_control_and_plain_random():
    own = "SGLP · random in its segments"
    other = "SGLP (paper) · random in its segments"
    rows = [row("SGLP", s, 14, [90.0 + s]) for s in (0, 1, 2)]
    rows += [row(own, s, 14, [88.0], control="in_segments") for s in (0, 1, 2)]
    rows += [row(other, s, 14, [50.0], control="in_segments") for s in (0, 1, 2)]  # another method's control
    rows += [row("Random", s, 14, [89.0]) for s in (0, 1)]
    found = {(q.reference, q.kept): q.differences for q in questions(rows, 150) if q.method == "SGLP"}
    assert found == {(own, 14): {0: 2.0, 1: 3.0, 2: 4.0}, ("Random", 14): {0: 1.0, 1: 2.0}}


def test_a_method_that_picks_its_depth_meets_its_controls_at_each_seeds_depth():
    m = "SGLP (paper)"
    rows = [row(m, 0, 12, [70.0], target=None), row(m, 1, 9, [60.0], target=None)]
    rows += [
        row(m + " · random in its segments", 0, 12, [72.0], control="in_segments"),
        row(m + " · random in its segments", 1, 9, [61.0], control="in_segments"),
        row(m + " · random, same depth", 0, 12, [69.0], control="same_depth"),
        row(m + " · random, same depth", 1, 9, [58.0], control="same_depth"),
        row("Random", 0, 14, [99.0]),
        row("Random", 1, 14, [99.0]),
    ]  # fmt: skip  (not at its depth: unused)
    found = {(q.kind, q.kept): q.differences for q in questions(rows, 150)}
    assert found == {("own control", None): {0: -2.0, 1: -1.0}, ("same depth", None): {0: 1.0, 1: 2.0}}


def test_holm_decides_what_survives_not_the_raw_interval():
    """Three questions with raw p-values (scipy's one-sample t-test) of about 0.004, 0.03 and 0.5: Holm multiplies
    by 3, 2, 1 (with the running maximum): 0.012 survives, 0.06 does not, 0.5 does not."""
    diffs = {"a": [1.0, 1.1, 0.9, 1.05], "b": [1.0, 0.2, 1.5, 0.8], "c": [0.5, -0.6, 0.2, -0.3]}
    raw = {k: stats.ttest_1samp(v, 0.0).pvalue for k, v in diffs.items()}
    assert raw["a"] < 0.05 / 3 and 0.05 / 2 < raw["b"] < 0.05 and raw["c"] > 0.05
    rows = []
    for name, values in diffs.items():
        rows += [row(name, s, 14, [80.0 + d]) for s, d in enumerate(values)]
    rows += [row("Random", s, 14, [80.0]) for s in range(4)]
    verdicts = {v.question.method: v for v in holm_verdicts(questions(rows, 150))}
    assert verdicts["a"].adjusted == pytest.approx(3 * raw["a"]) and verdicts["a"].survives
    assert verdicts["b"].adjusted == pytest.approx(max(3 * raw["a"], 2 * raw["b"])) and not verdicts["b"].survives
    assert not verdicts["c"].survives
    page = render(rows, "rows.csv", "make verdicts-page")
    assert "| verdicts | a | Random | 14 | 4 | **+1.01 ± " in page
    assert "| verdicts | b | Random | 14 | 4 | +0.88 ± " in page  # raw interval excludes 0, but not bold
    findings = page.split("## Findings")[1].split("## Designed questions")[0]
    assert "1 of the 3 designed questions survive Holm at 0.05" in findings
    assert "- verdicts: `a` wins against `Random` at 14 kept: +1.01 ± " in findings and "`b`" not in findings


def test_the_page_states_the_budget_and_says_provisional_when_the_rule_is_not_met(tmp_path):
    rows = [row("Random", s, 14, [80.0, 84.0, 86.0, 88.0]) for s in (0, 1)]
    rows += [row("SGLP", s, 14, [81.0, 85.0, 87.0, 89.5]) for s in (0, 1)]
    page = render(rows, "rows.csv", "make verdicts-page", plot_stem=str(tmp_path / "v"))
    assert "shown at the largest budget, 1200 steps, and are **provisional**" in page
    assert "### verdicts, 1200 steps (verdict budget)" in page and "### verdicts, 150 steps" in page
    assert (tmp_path / "v_verdicts.png").exists() and "![v_verdicts.png](v_verdicts.png)" in page
    settled = [row("Random", s, 14, [80.0, 84.0, 84.1, 84.1]) for s in (0, 1)]
    assert "Verdict budget: **300 steps**" in render(settled, "rows.csv", "make verdicts-page")
    assert "No rows yet:" in render([], "rows.csv", "make verdicts-page")
