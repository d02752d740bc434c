"""The pre-flight's search-size line against the search's own candidate lists, segmentation by segmentation."""

import itertools

import pytest

from sglp.core.errors import InvalidArgument
from sglp.experiment.preflight import search_size
from sglp.methods.search import SegmentSearch, segment_candidates


def _brute_force_counts(num_units: int, k: int, search: SegmentSearch) -> dict[tuple[int, ...], int]:
    """Candidates the search generates for every contiguous segmentation (cuts between units), by listing them."""
    counts = {}
    for cuts in itertools.combinations(range(1, num_units), k - 1):
        bounds = (0, *cuts, num_units)
        segments = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]
        try:
            alloc = search.plan(segments)
        except InvalidArgument:
            continue
        lists = [
            segment_candidates(s, search.candidate_sizes(len(s), m), search.budget) for s, m in zip(segments, alloc)
        ]
        counts[tuple(map(len, segments))] = sum(map(len, lists))
    return counts


@pytest.mark.parametrize(
    "search",
    [
        SegmentSearch(
            keep=5, mode="paper", cap_at_allotted=True
        ),  # every subset up to each allotment (search.cap_at_allotted)
        SegmentSearch(keep=5, mode="paper"),  # every non-empty subset (Table 6's sum of 2^n_i - 1)
        SegmentSearch(keep=5),  # exhaustive: C(n_i, m_i)
        SegmentSearch(keep=5, budget=6),  # a sampled budget per segment
    ],
    ids=["paper-capped", "paper", "exhaustive", "budget"],
)
def test_search_size_spans_every_segmentation(search):
    counts = _brute_force_counts(10, 3, search)
    size = search_size(10, 3, search)
    assert size.every_segmentation
    assert (size.fewest, size.most) == (min(counts.values()), max(counts.values()))
    assert counts[tuple(size.most_sizes)] == size.most
    assert size.equal == counts[(4, 3, 3)]


def test_search_size_reports_the_spread_where_segments_decide():
    """The capped every-subset search at 14 of ResNet-56's 27 blocks, k=5: equal segments give 147 candidates, but
    the CKA segments of three seeds gave 1,661-10,011 at this depth (an earlier grid); the line must say it can be
    far larger."""
    size = search_size(27, 5, SegmentSearch(keep=14, mode="paper", cap_at_allotted=True))
    assert size.equal == 147
    assert size.fewest <= 1_661 and 10_011 <= size.most
    assert f"{size.most:,}" in size.describe()


def test_search_size_without_a_spread_says_one_count():
    size = search_size(27, 1, SegmentSearch(keep=14))
    assert size.fewest == size.most == size.equal
    assert size.describe() == f"{size.equal:,} candidates for equal-size segments"


def test_search_size_when_equal_segments_do_not_fit_per_segment():
    """search.per_segment=[6, 1, 1] cannot apply to equal segments of 10 units (4, 3, 3), only to a first segment of
    6 or more; the count comes from those segmentations, listed one by one."""
    search = SegmentSearch(per_segment=[6, 1, 1])
    counts = _brute_force_counts(10, 3, search)
    size = search_size(10, 3, search)
    assert size.equal is None and (4, 3, 3) not in counts
    assert (size.fewest, size.most) == (min(counts.values()), max(counts.values()))
    assert "do not fit search.per_segment" in size.describe()
