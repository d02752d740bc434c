"""Fisher optimal segmentation against brute force over every segmentation."""

import itertools

import numpy as np
import pytest
import torch

from sglp.core.errors import InvalidArgument
from sglp.core.segmentation import FisherSegmenter, fisher_loss_curve, fisher_segments, segment_diameters


def brute_force(x: np.ndarray, k: int) -> tuple[float, list[list[int]]]:
    """Try every choice of k - 1 cut points; diameter computed directly from the definition."""
    n = len(x)

    def diameter(seg):
        v = x[seg]
        return float(((v - v.mean(0)) ** 2).sum())

    best = (float("inf"), None)
    for cuts in itertools.combinations(range(1, n), k - 1):
        bounds = (0, *cuts, n)
        segs = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]
        loss = sum(diameter(s) for s in segs)
        if loss < best[0] - 1e-12:
            best = (loss, segs)
    return best


def random_similarity(n: int, seed: int) -> torch.Tensor:
    g = np.random.default_rng(seed)
    a = g.normal(size=(n, 3))
    s = a @ a.T
    s = s / np.sqrt(np.outer(np.diag(s), np.diag(s)))
    return torch.from_numpy(np.abs(s))


def test_diameters_match_definition():
    x = torch.randn(9, 4, dtype=torch.float64)
    d = segment_diameters(x)
    for i in range(9):
        for j in range(i, 9):
            seg = x[i : j + 1]
            assert d[i, j].item() == pytest.approx(((seg - seg.mean(0)) ** 2).sum().item(), abs=1e-10)


@pytest.mark.parametrize("representation", ["row_sum", "row"])
@pytest.mark.parametrize("n,k", [(5, 1), (5, 2), (7, 3), (9, 4), (10, 5), (8, 8), (11, 3)])
def test_fisher_equals_brute_force(representation, n, k):
    for seed in range(3):
        s = random_similarity(n, seed * 31 + n)
        x = (s.sum(1, keepdim=True) if representation == "row_sum" else s).numpy()
        loss, expected = brute_force(x, k)
        got = fisher_segments(s, k, representation)
        assert got == expected
        assert fisher_loss_curve(s, k, representation)[-1] == pytest.approx(loss, abs=1e-9)


def test_segments_cover_units_in_order():
    s = random_similarity(27, 0)
    segs = fisher_segments(s, 5)
    assert len(segs) == 5 and all(segs)
    assert [u for seg in segs for u in seg] == list(range(27))


def test_planted_blocks_are_found():
    """Three blocks of mutually similar units: k=3 recovers them exactly."""
    sizes = [4, 6, 5]
    n = sum(sizes)
    s = torch.full((n, n), 0.1, dtype=torch.float64)
    start = 0
    for size, level in zip(sizes, [0.9, 0.6, 0.3]):
        s[start : start + size, start : start + size] = level
        start += size
    assert fisher_segments(s, 3) == [list(range(0, 4)), list(range(4, 10)), list(range(10, 15))]


def test_loss_curve_is_non_increasing():
    curve = fisher_loss_curve(random_similarity(12, 4), 12)
    assert all(a >= b - 1e-12 for a, b in zip(curve, curve[1:]))
    assert curve[-1] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("k", [0, -1, 10])
def test_bad_k_is_a_clear_error(k):
    with pytest.raises(InvalidArgument, match="segmenter.k"):
        FisherSegmenter(k=k)(random_similarity(9, 0))


def planted(sizes: list[int], seed: int, noise: float = 0.02) -> torch.Tensor:
    """Block-structured similarity: each planted block has its own within level, lower across, plus noise.
    Levels differ per block so that even the row-sum scalar can tell the blocks apart."""
    g = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    levels = np.linspace(0.95, 0.55, len(sizes))
    s = np.where(labels[:, None] == labels[None, :], levels[labels][:, None], 0.3)
    s = s + g.normal(0, noise, s.shape)
    s = (s + s.T) / 2
    np.fill_diagonal(s, 1.0)
    return torch.from_numpy(s)


PLANTS = [[9, 9], [5, 12, 10], [6, 6, 7, 8], [4, 6, 5, 7, 5], [3, 5, 4, 6, 4, 5]]


@pytest.mark.parametrize("sizes", PLANTS)
def test_auto_k_recovers_planted_blocks(sizes):
    for seed in range(3):
        seg = FisherSegmenter(k="auto", representation="row", k_max=10)
        result = seg(planted(sizes, seed))
        assert result.k == len(sizes)
        assert [len(s) for s in result.segments] == sizes
        assert len(result.loss_curve) == min(10, sum(sizes) // 2)


@pytest.mark.parametrize("sizes", PLANTS[:2])
def test_auto_k_with_row_sums_when_blocks_differ_in_row_sum(sizes):
    seg = FisherSegmenter(k="auto", representation="row_sum", k_max=10)
    assert [len(s) for s in seg(planted(sizes, 0)).segments] == sizes


def test_row_sum_scalar_merges_blocks_that_rows_separate():
    """A finding behind the `row` default: a block's row sum mixes its level and its size, so
    distinct blocks with close row sums are confused by the paper's scalar, not by full rows."""
    sizes = PLANTS[-1]
    s = planted(sizes, 0)
    assert [len(x) for x in fisher_segments(s, len(sizes), "row")] == sizes
    assert [len(x) for x in fisher_segments(s, len(sizes), "row_sum")] != sizes


def test_largest_relative_drop_of_textbook_curves():
    from sglp.core.segmentation import largest_relative_drop

    assert largest_relative_drop([10.0, 2.0, 1.5, 1.2, 1.0]) == 2
    assert largest_relative_drop([10.0, 9.0, 1.0, 0.8, 0.7, 0.6]) == 3
    assert largest_relative_drop([5.0, 5.0, 5.0]) == 1
    assert largest_relative_drop([5.0]) == 1


@pytest.mark.parametrize(
    "n,k,sizes", [(27, 3, [9, 9, 9]), (27, 5, [6, 6, 5, 5, 5]), (10, 1, [10]), (4, 4, [1, 1, 1, 1])]
)
def test_uniform_segments(n, k, sizes):
    from sglp.core.segmentation import UniformSegmenter

    segs = UniformSegmenter(k)(None, n).segments
    assert [len(s) for s in segs] == sizes
    assert [u for s in segs for u in s] == list(range(n))
