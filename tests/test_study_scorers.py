"""The scorer study's sampling and statistics (sglp.experiment.scorer_study) on synthetic candidates with known
answers."""

import itertools
import json
import math
import random

import numpy as np
import pytest

from sglp.experiment import scorer_study as study


def test_candidates_are_distinct_draws_of_the_allotted_size_from_the_real_space():
    segments, alloc = [[0, 1, 2, 3], [4, 5, 6], [7, 8]], [2, 1, 1]
    space = {
        tuple(sorted(a + b + c))
        for a in itertools.combinations(segments[0], 2)
        for b in itertools.combinations(segments[1], 1)
        for c in itertools.combinations(segments[2], 1)
    }
    drawn = study.draw_candidates(segments, alloc, 20, seed=0)
    assert len(drawn) == len(set(drawn)) == 20 and set(drawn) <= space
    assert set(study.draw_candidates(segments, alloc, 100, seed=0)) == space  # asks more than exist: all of them
    assert len(space) == math.comb(4, 2) * 3 * 2
    assert study.draw_candidates(segments, alloc, 20, seed=0) == drawn != study.draw_candidates(segments, alloc, 20, 1)


def synthetic(seeds=3, n=50):
    rng = random.Random(0)
    rows = {}
    for s in range(seeds):
        rows[s] = []
        for _ in range(n):
            acc = rng.uniform(80, 90)
            rows[s].append(
                {
                    "acc_after_ft": acc,
                    "acc_before_ft": acc - 50,
                    "gradnorm": -acc,  # min = the best
                    "gradnorm_paper_init": rng.random(),
                    "loss": rng.random(),
                    "random": rng.random(),
                    "kept": json.dumps(sorted(rng.sample(range(27), 14))),
                }
            )
    return rows


def test_spearman_and_pick_know_a_perfect_and_a_blind_scorer():
    rows = synthetic()
    full = {s: np.arange(len(rs)) for s, rs in rows.items()}
    rho_after, rho_before, pick = study.spearman_and_pick(rows, "gradnorm_min", full)
    assert rho_after == rho_before == 1.0
    assert pick == np.mean([max(r["acc_after_ft"] for r in rs) for rs in rows.values()])
    assert study.spearman_and_pick(rows, "gradnorm_max", full)[0] == -1.0
    assert abs(study.spearman_and_pick(rows, "random", full)[0]) < 0.2


def test_rendered_intervals_separate_a_perfect_scorer_from_chance(tmp_path):
    flat = [
        {**r, "keep": 14, "seed": s, "segments": "[[0]]", "alloc": "[1]"} for s, rs in synthetic().items() for r in rs
    ]
    args = study.StudySettings(checkpoint="model.pt", command="test", rows="rows.csv")
    page = study.render(flat, args, 0.0)
    line = {ln.split(" | ")[0][2:]: ln for ln in page.splitlines() if ln.startswith("| ")}
    perfect = line["gradnorm_min"].split(" | ")[1]  # "+1.00 [+1.00, +1.00]"
    blind = line["random"].split(" | ")[1]
    low, high = (float(x) for x in blind.split("[")[1].rstrip("]").split(", "))
    assert perfect.startswith("+1.00 [+1.00") and low < 0 < high


def candidate_rows(accuracy, seeds=3, n=50):
    """Rows of `n` real-shaped candidates per seed (14 of 27 kept) with acc. after FT = `accuracy(kept, rng)`."""
    segments = [list(range(0, 11)), list(range(11, 22)), list(range(22, 27))]
    rng = np.random.default_rng(0)
    return {
        s: [
            {"kept": json.dumps(list(k)), "acc_after_ft": accuracy(k, rng), "acc_before_ft": 0.0}
            for k in study.draw_candidates(segments, [6, 6, 2], n, seed=s)
        ]
        for s in range(seeds)
    }


def test_random_scorers_spread_like_the_textbook_null_when_accuracy_ignores_the_units():
    rows = candidate_rows(lambda k, rng: float(rng.normal()))  # accuracy independent of what is kept
    null = study.random_scorer_null(rows, "acc_after_ft", draws=2000)
    assert abs(float(np.mean(null))) < 0.05
    textbook = 1 / math.sqrt(49) / math.sqrt(3)  # Spearman under independence: sd 1/sqrt(n-1); mean of 3 seeds
    assert float(np.std(null)) == pytest.approx(textbook, rel=0.25)


def test_random_scorers_reach_far_when_accuracy_is_additive_in_the_units_and_a_true_scorer_beats_them():
    value = np.random.default_rng(1).normal(size=27)
    rows = candidate_rows(lambda k, rng: float(value[list(k)].sum()))
    null = study.random_scorer_null(rows, "acc_after_ft", draws=2000)
    independent = 1 / math.sqrt(49) / math.sqrt(3)
    assert float(np.std(null)) > 1.4 * independent  # random weights share the units' effect: wider than independence
    for rs in rows.values():
        for r in rs:
            r["gradnorm"] = -r["acc_after_ft"]  # a scorer that knows the answer
    perfect = study.spearman_and_pick(rows, "gradnorm_min", {s: np.arange(50) for s in rows})[0]
    assert perfect == 1.0 and np.mean(null < perfect) == 1.0


def test_the_page_says_where_the_rows_ran_and_which_predate_it():
    old = {"threads": 2}
    new = {"threads": 1, "cpu": "AMD EPYC", "cpu_count": 2, "gpu": None}
    assert study.where_the_rows_ran([old, old]) == (
        "Rows ran with 2 torch threads (these rows predate recorded machine and load)."
    )
    assert study.where_the_rows_ran([old, new]) == (
        "Rows ran with 1/2 torch threads on AMD EPYC, 2 cores, no GPU (1 rows record their machine and load, "
        "1 predate that)."
    )
    assert study.where_the_rows_ran([new]).endswith("(1 rows record their machine and load).")
