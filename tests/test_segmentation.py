"""Fisher optimal segmentation against brute force over every segmentation."""
import itertools

import numpy as np
import pytest
import torch

from sglp.errors import InvalidArgument
from sglp.segmentation import FisherSegmenter, fisher_loss_curve, fisher_segments, segment_diameters


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
