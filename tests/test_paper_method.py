"""`method=sglp_paper` is the SGLP paper's text: the k its Table 6 implies, and every composed choice."""

import itertools
import math

import pytest
from helpers import CONFIGS, compose_with, sweep_params
from hydra.utils import instantiate

from sglp.methods.search import SegmentSearch, segment_candidates

RESNET56_BLOCKS = 27
TABLE6_CANDIDATES = 16_430  # SGLP Table 6, "CKA + segmentation + GradNorm (SGLP)"


def partitions(n: int, k: int, largest: int | None = None):
    """Every multiset of k positive segment sizes summing to n, largest first (the order of the segments does not
    change the every-subset count)."""
    largest = n if largest is None else largest
    if k == 0:
        if n == 0:
            yield ()
        return
    for first in range(min(n, largest), 0, -1):
        for rest in partitions(n - first, k - 1, first):
            yield (first, *rest)


def every_subset_count(sizes: tuple[int, ...]) -> int:
    """The paper's search space: every non-empty subset of each segment, sum_i (2^n_i - 1)."""
    return sum(2**n - 1 for n in sizes)


def test_table6s_count_fits_only_six_segments_of_14_5_3_3_1_1():
    hits = {
        k: [p for p in partitions(RESNET56_BLOCKS, k) if every_subset_count(p) == TABLE6_CANDIDATES]
        for k in range(1, 11)
    }
    assert {k: v for k, v in hits.items() if v} == {6: [(14, 5, 3, 3, 1, 1)]}
    # contiguous splits with those sizes: 6! / (2! 2!) orderings of the multiset
    orders = set(itertools.permutations((14, 5, 3, 3, 1, 1)))
    assert len(orders) == math.factorial(6) // (2 * 2) == 180


def test_the_paper_search_enumerates_table6s_count_on_those_segments():
    """The search itself (not the formula above) lists 16,430 candidates for segments of 14/5/3/3/1/1 units."""
    search = instantiate(compose_with("method=sglp_paper").search)
    sizes, start, total = (14, 5, 3, 3, 1, 1), 0, 0
    for n in sizes:
        segment = list(range(start, start + n))
        total += len(segment_candidates(segment, search.candidate_sizes(n, max(1, n // 2))))
        start += n
    assert total == TABLE6_CANDIDATES


def assert_the_papers_choices(cfg) -> None:
    """Every choice the method yaml marks `paper`, except k and the depth target (a table sets those)."""
    assert (cfg.similarity.estimator, cfg.similarity.kernel) == ("biased", "linear")
    assert (cfg.calibration.batch_size, cfg.calibration.num_batches) == (128, 1)
    assert cfg.segmenter.representation == "row_sum"
    assert cfg.search.mode == "paper" and cfg.search.cap_at_allotted is False and cfg.search.budget is None
    assert cfg.scorer.init == "paper" and cfg.scorer.maximize is True
    assert instantiate(cfg.search).picks_depth


def test_sglp_paper_composes_to_the_papers_text():
    cfg = compose_with("method=sglp_paper")
    assert cfg.label == "SGLP (paper)" and cfg.segmenter.k == 6
    assert_the_papers_choices(cfg)


def test_paper_tables_run_sglp_paper_as_the_method_yaml_states_it():
    """A GPU table that runs SGLP (paper) may set its depth and k, never cap or sample the paper's search."""
    checked = []
    for path in sorted((CONFIGS / "experiment").glob("*.yaml")):
        experiment = path.stem
        if experiment.startswith(("table", "fig")) and not experiment.endswith("_cpu"):
            if "sglp_paper" in sweep_params(experiment).get("method", []):
                assert_the_papers_choices(compose_with(f"experiment={experiment}", "method=sglp_paper"))
                checked.append(experiment)
    assert "table6" in checked


@pytest.mark.parametrize(
    "method, changed",
    [
        ("sglp_paper_exact", {"search.mode": "exhaustive"}),
        ("sglp_paper_pretrained_init", {"scorer.init": "pretrained"}),
        ("sglp_paper_k5", {"segmenter.k": 5}),
    ],
)
def test_each_reading_changes_one_choice(method, changed):
    """A reading differs from `sglp_paper` in the named choice and in its label, nothing else that the method sets."""
    paper, reading = compose_with("method=sglp_paper"), compose_with(f"method={method}")
    assert reading.strategy._target_ == paper.strategy._target_
    for group in ["similarity", "calibration", "segmenter", "search", "scorer"]:
        a, b = dict(paper[group]), dict(reading[group])
        diff = {f"{group}.{k}": b.get(k) for k in set(a) | set(b) if a.get(k) != b.get(k)}
        assert diff == {k: v for k, v in changed.items() if k.startswith(group + ".")}, group
    assert reading.label.startswith("SGLP (paper) · ") and reading.label != paper.label


def test_only_the_exact_reading_meets_the_depth_target():
    assert not SegmentSearch(keep=13, mode="exhaustive").picks_depth
    exact = instantiate(compose_with("method=sglp_paper_exact", "search.keep=13").search)
    assert exact.candidate_sizes(14, 7) == [7]
