"""Fisher optimal segmentation: split L ordered units into k contiguous segments.

Each unit t has a representation x_t (a scalar, or a vector). A segment's *diameter* is the
sum of squared deviations from its mean, D(i, j) = sum_{t=i..j} ||x_t - mean(x_i..x_j)||^2
(SGLP Eqs. 16-17). The loss of a segmentation is the sum of its segments' diameters (Eq. 18);
the optimal one is found exactly by dynamic programming (Eqs. 19-22):

    F(1, j) = D(0, j - 1),     F(m, j) = min_{m-1 <= i < j} F(m - 1, i) + D(i, j - 1),

where F(m, j) is the least loss of putting the first j units into m segments. With prefix
sums every D(i, j) costs O(1), so the DP is O(k L^2).

Choosing k (`k="auto"`): the optimal loss L(k) falls as k grows. We take the k with the largest
relative drop, argmax_k L(k-1) / L(k) over k = 2..k_max: with m blocks of similar units, L falls to
the noise floor at k = m, so that ratio peaks there, while a linear-scale elbow (Kneedle) is
dominated by the first drop. k_max is capped at L // 2, since L(k) -> 0 as k -> L makes late
ratios meaningless.

Representations: `row_sum` is the paper's scalar per unit, the row sum of the CKA matrix
(Eq. 12); `row` uses the unit's whole CKA row as a vector (diameter = sum of squared
Euclidean distances to the segment's mean row).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sglp.core.errors import InvalidArgument

REPRESENTATIONS = ("row_sum", "row")


def unit_representation(similarity: torch.Tensor, representation: str = "row_sum") -> torch.Tensor:
    """(L, p) representation of each unit from an (L, L) similarity matrix."""
    s = torch.as_tensor(similarity, dtype=torch.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise InvalidArgument(f"similarity must be a square (L, L) matrix, got shape {tuple(s.shape)}")
    if representation == "row_sum":
        return s.sum(1, keepdim=True)
    if representation == "row":
        return s
    raise InvalidArgument(f"unknown representation {representation!r}: choose one of {REPRESENTATIONS}")


def segment_diameters(x: torch.Tensor) -> torch.Tensor:
    """(L, L) matrix D with D[i, j] = diameter of units i..j (j >= i; 0 below the diagonal).

    x: (L, p). Uses D(i, j) = sum ||x_t||^2 - ||sum x_t||^2 / (j - i + 1) from prefix sums.
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = x.shape[0]
    s1 = torch.cat([torch.zeros(1, x.shape[1], dtype=x.dtype), x.cumsum(0)])
    s2 = torch.cat([torch.zeros(1, dtype=x.dtype), (x * x).sum(1).cumsum(0)])
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    count = (j - i + 1).clamp_min(1).to(x.dtype)
    seg_sum = s1[j + 1] - s1[i]  # (L, L, p)
    d = (s2[j + 1] - s2[i]) - (seg_sum * seg_sum).sum(-1) / count
    return torch.where(j >= i, d.clamp_min(0.0), torch.zeros_like(d))


def fisher_dp(diameters: torch.Tensor, k: int) -> tuple[float, list[list[int]]]:
    """Exact minimum total diameter over all splits of units 0..L-1 into k contiguous segments.

    Returns (loss, segments); ties go to the earliest split point.
    """
    n = diameters.shape[0]
    if not 1 <= k <= n:
        raise InvalidArgument(f"k must be between 1 and the number of units ({n}), got {k}")
    d = diameters.tolist()
    inf = float("inf")
    f = [[inf] * (n + 1) for _ in range(k + 1)]
    arg = [[0] * (n + 1) for _ in range(k + 1)]
    for j in range(1, n + 1):
        f[1][j] = d[0][j - 1]
    for m in range(2, k + 1):
        for j in range(m, n + 1):
            best, best_i = inf, m - 1
            for i in range(m - 1, j):
                v = f[m - 1][i] + d[i][j - 1]
                if v < best:
                    best, best_i = v, i
            f[m][j], arg[m][j] = best, best_i
    cuts, j = [], n
    for m in range(k, 1, -1):
        j = arg[m][j]
        cuts.append(j)
    return f[k][n], contiguous_segments([0] + cuts[::-1] + [n])


def fisher_segments(similarity: torch.Tensor, k: int, representation: str = "row_sum") -> list[list[int]]:
    """k lists of consecutive unit indices covering 0..L-1 that minimise the Fisher criterion
    (sum of segment diameters) for the given (L, L) similarity matrix."""
    return fisher_dp(segment_diameters(unit_representation(similarity, representation)), k)[1]


def fisher_loss_curve(similarity: torch.Tensor, k_max: int, representation: str = "row_sum") -> list[float]:
    """Optimal Fisher loss for k = 1..k_max (for choosing k)."""
    d = segment_diameters(unit_representation(similarity, representation))
    return [fisher_dp(d, k)[0] for k in range(1, k_max + 1)]


def largest_relative_drop(curve: list[float]) -> int:
    """k (1-based) maximising curve[k-2] / curve[k-1] over k >= 2; 1 for a flat or 1-point curve."""
    if len(curve) < 2 or curve[0] <= 0:
        return 1
    floor = 1e-12 * curve[0]
    ratios = [curve[i - 1] / max(curve[i], floor) for i in range(1, len(curve))]
    best = max(range(len(ratios)), key=lambda i: (ratios[i], -i))
    return best + 2 if ratios[best] > 1.0 + 1e-9 else 1


def choose_k(similarity: torch.Tensor, k_max: int = 10, representation: str = "row_sum") -> tuple[int, list[float]]:
    """(k with the largest relative drop of the optimal loss, the curve for k = 1..min(k_max, L // 2))."""
    curve = fisher_loss_curve(similarity, max(1, min(k_max, similarity.shape[0] // 2)), representation)
    return largest_relative_drop(curve), curve


@dataclass
class Segmentation:
    """A segmenter's answer: `segments` (lists of consecutive unit indices covering 0..L-1, in order), their number
    `k`, and the optimal loss for k = 1..k_max when k was chosen from it (None otherwise)."""

    segments: list[list[int]]
    loss_curve: list[float] | None = None

    @property
    def k(self) -> int:
        return len(self.segments)


class Segmenter(ABC):
    """Segmenter contract: `check(num_units)` fails fast on impossible settings; `segmenter(similarity, num_units)`
    returns a Segmentation. `needs_similarity = False` lets the job skip the CKA stage (similarity is then None);
    `k` is what was requested (a number or "auto"); `min_segments` bounds a keep target from below."""

    needs_similarity: bool = True
    k: int | str

    @property
    @abstractmethod
    def min_segments(self) -> int:
        """Fewest segments this segmenter can produce (for checking a keep target up front)."""

    @abstractmethod
    def check(self, num_units: int) -> None:
        """InvalidArgument if the settings cannot segment `num_units` units."""

    @abstractmethod
    def __call__(self, similarity: torch.Tensor | None, num_units: int) -> Segmentation:
        """Segments of `num_units` units, from their (L, L) similarity when `needs_similarity`."""


def check_k(k, num_units: int | None, auto: bool) -> None:
    """segmenter.k: an integer in 1..num_units (or `auto`); num_units None = not known yet (at construction)."""
    if auto and k == "auto":
        return
    top = num_units if num_units is not None else float("inf")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= top:
        model = f" for a model with {num_units} prunable units" if num_units is not None else ""
        allowed = f"1 <= k <= {num_units}" if num_units is not None else "an integer k >= 1"
        raise InvalidArgument(f"segmenter.k={k!r} is invalid{model}: use {allowed}" + (", or k=auto" if auto else ""))


@dataclass
class FisherSegmenter(Segmenter):
    """Fisher optimal segmentation of the units' CKA representations into `k` segments, or k="auto": the k with the
    largest relative drop of the optimal loss (up to `k_max`; the loss curve is returned with the segments)."""

    k: int | str = 3
    representation: str = "row_sum"
    k_max: int = 10
    needs_similarity = True

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise InvalidArgument(f"segmenter.representation={self.representation!r}: choose one of {REPRESENTATIONS}")
        if self.k == "auto" and (isinstance(self.k_max, bool) or not isinstance(self.k_max, int) or self.k_max < 1):
            raise InvalidArgument(f"segmenter.k_max={self.k_max!r} must be an integer >= 1")
        if self.k != "auto":
            check_k(self.k, None, auto=True)

    @property
    def min_segments(self) -> int:
        return 1 if self.k == "auto" else int(self.k)

    def check(self, num_units: int) -> None:
        check_k(self.k, num_units, auto=True)

    def __call__(self, similarity: torch.Tensor | None, num_units: int | None = None) -> Segmentation:
        if similarity is None:
            raise InvalidArgument("FisherSegmenter segments a similarity matrix: the strategy gave none")
        self.check(similarity.shape[0])
        if self.k == "auto":
            k, curve = choose_k(similarity, self.k_max, self.representation)
            return Segmentation(fisher_segments(similarity, k, self.representation), curve)
        return Segmentation(fisher_segments(similarity, int(self.k), self.representation))


def contiguous_segments(bounds: Sequence[int]) -> list[list[int]]:
    """Segments [bounds[i], bounds[i+1]) of unit indices, e.g. (0, 3, 5) -> [[0, 1, 2], [3, 4]]."""
    return [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]


def uniform_segments(num_units: int, k: int) -> list[list[int]]:
    """k contiguous segments of near-equal size (earlier segments one larger when L % k != 0)."""
    if not 1 <= k <= num_units:
        raise InvalidArgument(f"k must be between 1 and the number of units ({num_units}), got {k}")
    sizes = [num_units // k + (1 if i < num_units % k else 0) for i in range(k)]
    return contiguous_segments([sum(sizes[:i]) for i in range(k + 1)])


@dataclass
class UniformSegmenter(Segmenter):
    """Ablation (SGLP Table 6): k equal-size segments, ignoring the similarity matrix.
    k = 1 is "no segmentation" (one segment = the whole network: `segmenter=whole`)."""

    k: int = 3
    needs_similarity = False  # the job skips the CKA stage

    def __post_init__(self) -> None:
        check_k(self.k, None, auto=False)

    @property
    def min_segments(self) -> int:
        return self.k

    def check(self, num_units: int) -> None:
        check_k(self.k, num_units, auto=False)

    def __call__(self, similarity: torch.Tensor | None, num_units: int) -> Segmentation:
        self.check(num_units)
        return Segmentation(uniform_segments(num_units, self.k))
