"""sglp.core.stats against textbook values: Student-t quantiles from the printed table, intervals computed by hand,
and a bootstrap that must cover the mean of a known distribution at about its nominal rate."""

import itertools
import math

import numpy as np
import pytest

from sglp.core.stats import bootstrap_interval, paired_difference, t_interval

# t_{df, 0.975} from a printed Student-t table (e.g. Montgomery, Applied Statistics, Table IV)
T_975 = {1: 12.706, 2: 4.303, 4: 2.776, 9: 2.262, 29: 2.045}


@pytest.mark.parametrize("df", sorted(T_975))
def test_t_interval_half_width_is_the_table_quantile_times_the_standard_error(df):
    x = np.arange(df + 1, dtype=float) ** 1.5
    s = math.sqrt(sum((v - x.mean()) ** 2 for v in x) / df)  # sample standard deviation by hand
    ci = t_interval(x)
    assert ci.mean == pytest.approx(x.mean())
    assert ci.half_width == pytest.approx(T_975[df] * s / math.sqrt(df + 1), rel=2e-4)


def test_three_seeds_by_hand():
    ci = t_interval([88.0, 89.0, 90.5])  # mean 89.1667, s = 1.2583, se = 0.7265, t = 4.303
    assert (ci.mean, ci.half_width) == (pytest.approx(89.1667, abs=1e-4), pytest.approx(3.126, abs=1e-3))
    assert ci.format() == "89.17 ± 3.13" and t_interval([88.0]).format() == "88.00"
    assert not t_interval([88.0]).excludes(0.0)


def test_paired_difference_uses_only_shared_seeds_and_detects_a_consistent_gain():
    a = {0: 88.0, 1: 86.0, 2: 90.0, 3: 70.0}
    b = {0: 87.0, 1: 85.1, 2: 88.9}
    d = paired_difference(a, b)
    assert d.n == 3 and d.mean == pytest.approx(1.0, abs=1e-9) and d.excludes(0.0)
    # unpaired, the same numbers overlap heavily: the seeds' spread hides the gain
    assert t_interval(list(b.values())).high > t_interval([a[s] for s in b]).low
    assert paired_difference(a, {7: 1.0}) is None
    assert not paired_difference({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 1.0, 2: 3.0}).excludes(0.0)
    assert d.side() == 1 and paired_difference(b, a).side() == -1  # above 0 / below 0
    assert paired_difference({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 1.0, 2: 3.0}).side() == 0  # covers 0
    assert paired_difference({0: 5.0}, {0: 1.0}).side() == 0  # one seed: no interval, no side
    reverse = paired_difference(b, a)  # b − a is the negated interval of a − b
    assert (-d).mean == pytest.approx(reverse.mean) and (-d).low == pytest.approx(reverse.low)
    assert (-d).high == pytest.approx(reverse.high) and (-d).n == reverse.n


def test_t_and_bootstrap_intervals_cover_the_true_mean_at_about_95_percent():
    rng = np.random.default_rng(0)
    covered_t = covered_boot = 0
    trials = 300
    for i in range(trials):
        x = rng.normal(5.0, 2.0, size=30)
        covered_t += t_interval(x).low <= 5.0 <= t_interval(x).high
        b = bootstrap_interval(lambda idx, x=x: float(x[idx].mean()), len(x), resamples=400, seed=i)
        covered_boot += b.low <= 5.0 <= b.high
    assert 0.91 <= covered_t / trials <= 0.99
    assert 0.88 <= covered_boot / trials <= 0.98  # the percentile bootstrap is a little narrow at n = 30


def test_a_stratified_bootstrap_keeps_every_stratum_size_and_matches_the_textbook_spread():
    x = np.array([0.0, 1.0, 2.0, 10.0, 11.0, 12.0, 13.0])  # stratum 0: three items, stratum 1: four
    strata = [0, 0, 0, 1, 1, 1, 1]
    size_of_first = lambda idx: float(np.sum(idx < 3))  # noqa: E731
    pooled = bootstrap_interval(size_of_first, len(x), resamples=300, seed=1)
    assert pooled.low < 3 < pooled.high  # pooled draws move items between strata
    within = bootstrap_interval(size_of_first, len(x), resamples=300, seed=1, strata=strata)
    assert within.low == within.high == 3.0
    # the mean of two stratum means: its bootstrap standard error is the textbook sqrt(sum s_g^2 / n_g) / 2 with
    # s_g^2 each stratum's plug-in variance; a pooled bootstrap would add the spread of the strata sizes
    y = np.concatenate([np.random.default_rng(0).normal(0, 1, 40), np.random.default_rng(1).normal(50, 3, 60)])
    labels = [0] * 40 + [1] * 60
    textbook = math.sqrt(y[:40].var() / 40 + y[40:].var() / 60) / 2
    mean_of_means = lambda j: float((y[j[j < 40]].mean() + y[j[j >= 40]].mean()) / 2)  # noqa: E731
    spread = bootstrap_interval(mean_of_means, len(y), resamples=2000, seed=3, strata=labels)
    assert (spread.high - spread.low) / 2 == pytest.approx(1.96 * textbook, rel=0.1)
    with pytest.raises(ValueError, match="strata"):
        bootstrap_interval(size_of_first, len(x), strata=[0, 1])


def test_holm_on_the_textbook_example():
    """Four hypotheses at alpha 0.05 (the usual worked example): sorted 0.005, 0.01, 0.03, 0.04 are multiplied by
    4, 3, 2, 1 -> 0.02, 0.03, 0.06, max(0.06, 0.04); the first two are rejected, then Holm stops."""
    from sglp.core.stats import holm

    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.9, 0.8]) == [1.0, 1.0]


def _closed_testing_bonferroni(pvalues):
    """Holm as the closed testing of Bonferroni tests (Marcus et al. 1976): hypothesis i's adjusted p-value is the
    largest, over every intersection S that contains i, of min(1, |S| · min_{j in S} p_j)."""
    m = len(pvalues)
    out = []
    for i in range(m):
        others = [j for j in range(m) if j != i]
        worst = 0.0
        for r in range(len(others) + 1):
            for rest in itertools.combinations(others, r):
                s = (i, *rest)
                worst = max(worst, min(1.0, len(s) * min(pvalues[j] for j in s)))
        out.append(worst)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_holm_equals_closed_testing_of_bonferroni(seed):
    from sglp.core.stats import holm

    rng = np.random.default_rng(seed)
    p = list(rng.uniform(0, 0.2, size=int(rng.integers(1, 8))))
    assert holm(p) == pytest.approx(_closed_testing_bonferroni(p))


def test_paired_t_pvalue_matches_scipys_one_sample_test():
    from scipy import stats

    from sglp.core.stats import paired_t_pvalue

    rng = np.random.default_rng(3)
    for n in (2, 3, 5, 9):
        x = rng.normal(0.4, 1.0, size=n)
        assert paired_t_pvalue(x) == pytest.approx(stats.ttest_1samp(x, 0.0).pvalue)
    assert paired_t_pvalue([0.0, 0.0, 0.0]) == 1.0 and paired_t_pvalue([0.5, 0.5]) == 0.0
