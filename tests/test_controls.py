"""Matched controls (sglp.methods.controls): random units drawn the way a method drew its own."""

import itertools
from collections import Counter

import pytest

from sglp.core.errors import InvalidArgument
from sglp.methods.controls import CONTROLS, check_controls, control_kept, kept_per_segment

SEGMENTS = [[0, 1, 2, 3], [4, 5], [6, 7, 8, 9, 10]]
KEPT = [1, 2, 5, 6, 8, 9, 10]  # 2 of the first segment, 1 of the second, 4 of the third


def test_kept_per_segment_counts_by_hand():
    assert kept_per_segment(SEGMENTS, KEPT) == [2, 1, 4]
    with pytest.raises(ValueError):
        kept_per_segment(SEGMENTS, [11])


@pytest.mark.parametrize("seed", range(20))
def test_in_segments_keeps_the_methods_count_in_every_segment(seed):
    kept = control_kept("in_segments", SEGMENTS, KEPT, seed)
    assert kept == sorted(set(kept))
    assert kept_per_segment(SEGMENTS, kept) == kept_per_segment(SEGMENTS, KEPT)


@pytest.mark.parametrize("seed", range(20))
def test_same_depth_keeps_the_methods_total_anywhere(seed):
    kept = control_kept("same_depth", SEGMENTS, KEPT, seed)
    assert len(kept) == len(set(kept)) == len(KEPT) and set(kept) <= set(range(11))


def test_a_draw_is_seeded_and_the_two_controls_draw_differently():
    for name in CONTROLS:
        assert control_kept(name, SEGMENTS, KEPT, 3) == control_kept(name, SEGMENTS, KEPT, 3)
    draws = {tuple(control_kept("same_depth", SEGMENTS, KEPT, s)) for s in range(30)}
    assert len(draws) > 20


def test_in_segments_is_uniform_over_the_subsets_of_each_segment():
    """Brute force: over many seeds every 2-of-4 subset of the first segment appears about equally often
    (C(4, 2) = 6 subsets, expected 1/6 each)."""
    n = 3000
    counts = Counter(tuple(u for u in control_kept("in_segments", SEGMENTS, KEPT, s) if u < 4) for s in range(n))
    assert set(counts) == set(itertools.combinations(range(4), 2))
    for c in counts.values():
        assert abs(c / n - 1 / 6) < 0.03


def test_same_depth_is_uniform_over_units():
    n = 3000
    counts = Counter(u for s in range(n) for u in control_kept("same_depth", SEGMENTS, KEPT, s))
    for u in range(11):
        assert abs(counts[u] / n - 7 / 11) < 0.04


def test_unknown_or_repeated_controls_are_refused():
    assert check_controls(["same_depth"]) == ("same_depth",)
    for bad in (["bogus"], ["same_depth", "same_depth"]):
        with pytest.raises(InvalidArgument, match="matched_controls"):
            check_controls(bad)
