"""Small statistics for comparisons over seeds: t-intervals, paired differences, bootstrap intervals.

Every function takes plain sequences and returns numbers; `Interval` prints as `mean ± half-width`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats


@dataclass(frozen=True)
class Interval:
    """A point estimate with a symmetric (t) or percentile (bootstrap) interval [low, high] from n values."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __neg__(self) -> Interval:
        """The interval of the negated quantity (b − a from a − b)."""
        return Interval(-self.mean, -self.high, -self.low, self.n)

    def side(self, value: float = 0.0) -> int:
        """+1 if the whole interval lies above `value`, -1 if below, 0 if it covers it or has no width (n < 2)."""
        if self.n < 2:
            return 0
        return 1 if self.low > value else -1 if self.high < value else 0

    def excludes(self, value: float = 0.0) -> bool:
        """Whether `value` lies outside the interval (the difference is significant at its level)."""
        return self.side(value) != 0

    def format(self, digits: int = 2, signed: bool = False) -> str:
        """'mean ± half width' ('+mean ...' when `signed`: a difference); the mean alone without an interval."""
        mean = f"{self.mean:+.{digits}f}" if signed else f"{self.mean:.{digits}f}"
        if self.n < 2 or not math.isfinite(self.half_width):
            return mean
        return f"{mean} ± {self.half_width:.{digits}f}"


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of `values` (n) with the Student-t interval mean ± t_{n-1, (1+level)/2} · s / sqrt(n); n = 1 gives a
    point (no interval), s is the sample standard deviation (ddof 1)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("t_interval of no values")
    m = float(x.mean())
    if x.size == 1:
        return Interval(m, m, m, 1)
    half = float(_scipy_stats.t.ppf((1 + level) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return Interval(m, m - half, m + half, int(x.size))


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95) -> Interval | None:
    """t-interval of a[s] - b[s] over the seeds s both have (paired: the same seed draws the same calibration
    data and fine-tuning order for both methods); None when they share no seed."""
    common = sorted(set(a) & set(b))
    if not common:
        return None
    return t_interval([a[s] - b[s] for s in common], level)


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    n: int,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    strata: Sequence[int] | None = None,
) -> Interval:
    """Percentile bootstrap of `statistic(indices)` over `n` items resampled with replacement; the point estimate
    is the statistic on all items. `strata` (one label per item): resample within each stratum, so every draw
    keeps each stratum's size (e.g. candidates within each seed). Resamples on which the statistic is undefined
    (nan) are dropped."""
    rng = np.random.default_rng(seed)
    point = float(statistic(np.arange(n)))
    if strata is None:
        groups = [np.arange(n)]
    else:
        labels = np.asarray(strata)
        if labels.shape != (n,):
            raise ValueError(f"strata has {labels.size} labels for {n} items")
        groups = [np.flatnonzero(labels == g) for g in np.unique(labels)]

    def draw() -> np.ndarray:
        return np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])

    draws = np.array([statistic(draw()) for _ in range(resamples)], dtype=float)
    draws = draws[np.isfinite(draws)]
    alpha = (1 - level) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha]) if draws.size else (math.nan, math.nan)
    return Interval(point, float(low), float(high), n)


def paired_t_pvalue(differences: Sequence[float]) -> float:
    """Two-sided p-value of the one-sample t-test that the mean of `differences` (n >= 2) is 0: 2 · P(T_{n-1} >
    |mean| / (s / sqrt(n))); 1.0 when every difference is 0, 0.0 when they are equal and not 0."""
    x = np.asarray(differences, dtype=float)
    if x.size < 2:
        raise ValueError(f"a paired t-test needs at least 2 differences, got {x.size}")
    m, s = float(x.mean()), float(x.std(ddof=1))
    if s == 0.0:
        return 1.0 if m == 0.0 else 0.0
    t = abs(m) / (s / math.sqrt(x.size))
    return float(2 * _scipy_stats.t.sf(t, x.size - 1))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (Holm 1979), in the input order: sort p ascending, p_(i) · (m - i + 1) for
    i = 1..m, a running maximum so the order is kept, capped at 1. A hypothesis is rejected at family-wise level
    alpha when its adjusted p-value is <= alpha."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        adjusted[i] = running
    return adjusted
