"""Segment-wise search: allocation, exact candidate counts, argmax against brute force, orders."""

import itertools
import math

import pytest
import torch

from sglp.core.errors import InvalidArgument
from sglp.core.units import prunable_units
from sglp.kinds.classification.models.resnet_cifar import resnet20
from sglp.methods.criteria.random import RandomUnits
from sglp.methods.scorers.base import Scorer
from sglp.methods.search import SegmentSearch, allocate_keep, target_keep


class RecordingScorer(Scorer):
    """Scores a candidate by a fixed weight per removed unit, recording what it saw."""

    maximize = True

    def __init__(self, weights):
        self.weights, self.seen = weights, []

    def prepare(self, calibration, model=None):
        pass

    def __call__(self, model, removed, segment=None, kept=None):
        assert len(prunable_units(model)) == 9 - len(removed)  # it really is the candidate network
        assert set(kept) <= set(segment) and not set(kept) & set(removed)
        self.seen.append(tuple(removed))
        return -sum(self.weights[u] for u in removed)


@pytest.mark.parametrize(
    "sizes,keep,expected",
    [
        ([9, 9, 9], 14, [5, 5, 4]),  # quotas 4.67 each: floors 4,4,4; +1 to the first two (ties -> earlier)
        ([4, 10, 13], 14, [2, 5, 7]),  # quotas 2.07, 5.19, 6.74: floors 2,5,6; +1 to the largest remainder
        ([1, 1, 25], 3, [1, 1, 1]),  # quotas 0.11, 0.11, 2.78: at least one each, so the big segment gives one back
        ([5, 5], 10, [5, 5]),
        ([3, 7, 2, 6], 4, [1, 1, 1, 1]),
        ([12, 3], 8, [6, 2]),  # quotas 6.4, 1.6: floors 6,1; +1 to the larger remainder (0.6)
    ],
)
def test_allocation_is_largest_remainder(sizes, keep, expected):
    alloc = allocate_keep(sizes, keep)
    assert alloc == expected
    assert sum(alloc) == keep and all(1 <= a <= s for a, s in zip(alloc, sizes))


def test_allocation_rejects_impossible():
    with pytest.raises(InvalidArgument, match="at least one"):
        allocate_keep([3, 3, 3], 2)


@pytest.mark.parametrize("keep,ratio,expected", [(14, None, 14), (None, 0.5, 13), (None, 0.0, 27)])
def test_target_keep(keep, ratio, expected):
    assert target_keep(27, keep, ratio) == expected


@pytest.mark.parametrize("keep,ratio", [(0, None), (28, None), (None, 1.0), (14, 0.5), (None, None)])
def test_target_keep_rejects(keep, ratio):
    with pytest.raises(InvalidArgument):
        target_keep(27, keep, ratio)


def test_search_enumerates_every_candidate_and_picks_brute_force_best():
    torch.manual_seed(0)
    weights = torch.rand(9).tolist()
    segments = [[0, 1, 2], [3, 4, 5, 6], [7, 8]]
    scorer = RecordingScorer(weights)
    search = SegmentSearch(keep=5)
    alloc = search.plan(segments)
    result = search(resnet20(10, 1), segments, scorer, progress=False)
    expected_space = sum(math.comb(len(s), m) for s, m in zip(segments, alloc))
    assert result.search_space == expected_space
    assert len(scorer.seen) == sum(math.comb(len(s), m) for s, m in zip(segments, alloc) if math.comb(len(s), m) > 1)
    # brute force: per segment, remove the units with the smallest total weight
    for seg, m, choice in zip(segments, alloc, result.choices):
        best = max(itertools.combinations(seg, m), key=lambda kept: -sum(weights[u] for u in seg if u not in kept))
        assert choice.kept == list(best)
    assert sorted(result.kept + result.removed) == list(range(9))
    assert len(result.kept) == 5


def test_sequential_order_applies_earlier_decisions():
    segments = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    for order in ("independent", "sequential"):
        scorer = RecordingScorer([1.0] * 9)
        result = SegmentSearch(keep=6, order=order)(resnet20(10, 1), segments, scorer, progress=False)
        removed_first = [u for u in segments[0] if u not in result.choices[0].kept]
        later = [r for r in scorer.seen if any(u >= 3 for u in r)]
        if order == "sequential":
            assert all(set(removed_first) <= set(r) for r in later)
        else:
            assert all(not set(removed_first) & set(r) for r in later)


def test_same_seed_same_kept_layers():
    segments = [[0, 1, 2, 3], [4, 5, 6, 7, 8]]
    model, runs = resnet20(10, 1), []
    for s in (7, 7, 8, 9):
        scorer = RandomUnits(seed=s)
        scorer.prepare(None, model)
        runs.append(SegmentSearch(keep=4)(model, segments, scorer, progress=False).kept)
    assert runs[0] == runs[1] and len({tuple(r) for r in runs[1:]}) > 1


def test_minimising_scorer_picks_smallest():
    class Min(RecordingScorer):
        maximize = False

    weights = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.6, 0.4]
    result = SegmentSearch(keep=7)(resnet20(10, 1), [list(range(9))], Min(weights), progress=False)
    # minimising -sum(removed weights) removes the two heaviest units
    assert result.removed == [2, 6]


def test_budget_samples_distinct_candidates_reproducibly():
    from sglp.methods.search import segment_candidates

    seg = list(range(14))
    a, b = segment_candidates(seg, [7], budget=50, seed=1), segment_candidates(seg, [7], budget=50, seed=1)
    assert a == b and len(a) == 50 and len(set(a)) == 50
    assert all(len(c) == 7 and set(c) <= set(seg) for c in a)
    assert segment_candidates(seg, [7], budget=50, seed=2) != a
    assert len(segment_candidates([0, 1, 2, 3], [2], budget=50)) == 6  # budget above the space: exhaustive
    mixed = segment_candidates(seg, list(range(1, 15)), budget=200, seed=0)
    assert len(set(mixed)) == 200 and {len(c) for c in mixed} <= set(range(1, 15))


def test_search_with_budget_scores_only_the_sample():
    scorer = RecordingScorer([1.0] * 9)
    result = SegmentSearch(keep=4, budget=10)(resnet20(10, 1), [list(range(9))], scorer, progress=False)
    assert result.search_space == math.comb(9, 4) and result.evaluated == 10 and len(scorer.seen) == 10


def test_paper_mode_scores_every_nonempty_subset_and_picks_brute_force_best():
    weights = [0.5, -0.1, 0.9, 0.3, -0.7, 0.2, 0.8, -0.6, 0.4]
    segments = [[0, 1, 2], [3, 4, 5, 6], [7, 8]]
    scorer = RecordingScorer(weights)  # score = -(sum of removed weights): keeping units of weight > 0 is best
    search = SegmentSearch(keep=5, mode="paper")
    result = search(resnet20(10, 1), segments, scorer, progress=False)
    assert result.search_space == sum(2 ** len(s) - 1 for s in segments) == 7 + 15 + 3
    assert len(scorer.seen) == result.search_space
    for seg, choice in zip(segments, result.choices):
        subsets = [c for j in range(1, len(seg) + 1) for c in itertools.combinations(seg, j)]
        best = max(subsets, key=lambda kept: -sum(weights[u] for u in seg if u not in kept))
        assert choice.kept == list(best)
    assert result.removed == [1, 4, 7]  # the paper's space lets the kept count follow the score


def test_paper_mode_capped_at_allotted_sizes():
    segments = [[0, 1, 2, 3], [4, 5, 6, 7, 8]]
    search = SegmentSearch(keep=4, mode="paper", cap_at_allotted=True)
    alloc = search.plan(segments)
    expected = sum(math.comb(len(s), j) for s, m in zip(segments, alloc) for j in range(1, m + 1))
    scorer = RecordingScorer([1.0] * 9)
    result = search(resnet20(10, 1), segments, scorer, progress=False)
    assert result.search_space == expected and len(scorer.seen) == expected
    assert all(len(c.kept) <= m for c, m in zip(result.choices, alloc))


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(InvalidArgument, match="search.mode"):
        SegmentSearch(mode="greedy")


def test_per_segment_allocation_is_used_and_checked():
    segments = [[0, 1, 2], [3, 4, 5, 6], [7, 8]]
    assert SegmentSearch(keep=None, per_segment=[1, 3, 2]).plan(segments) == [1, 3, 2]
    result = SegmentSearch(keep=None, per_segment=[1, 3, 2])(
        resnet20(10, 1), segments, RecordingScorer([1.0] * 9), progress=False
    )
    assert [len(c.kept) for c in result.choices] == [1, 3, 2]
    with pytest.raises(InvalidArgument, match="per_segment"):
        SegmentSearch(per_segment=[1, 5, 2]).plan(segments)
    with pytest.raises(InvalidArgument, match="per_segment"):
        SegmentSearch(per_segment=[1, 2]).plan(segments)
    # up front, before any data: the count of a fixed segmenter.k is known, the sizes are not
    SegmentSearch(per_segment=[1, 3, 2]).check(9, 3, known_segments=3)
    with pytest.raises(InvalidArgument, match="per_segment"):
        SegmentSearch(per_segment=[1, 2]).check(9, 3, known_segments=3)
    with pytest.raises(InvalidArgument, match="per_segment"):
        SegmentSearch(per_segment=[5, 5, 5]).check(9, 3, known_segments=3)


def test_budget_of_one_needs_no_scoring():
    """budget=1 leaves one sampled candidate per segment: nothing to compare, so nothing is scored."""
    segments = [[0, 1, 2, 3], [4, 5, 6, 7, 8]]
    scorer = RecordingScorer([1.0] * 9)
    result = SegmentSearch(keep=4, budget=1, order="sequential")(resnet20(10, 1), segments, scorer, progress=False)
    assert scorer.seen == [] and result.evaluated == 2
    assert result.choices[0].score is None and len(result.kept) == 4
