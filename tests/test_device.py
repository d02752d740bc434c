"""default_threads: a parallel launcher's jobs share the cores instead of each taking all of them."""

import pytest


@pytest.mark.parametrize(
    "threads, jobs, cores, expected",
    [
        (3, 2, 16, 3),  # set by the user: as set
        (None, None, 16, 16),  # the basic launcher: one job at a time, every core
        (None, 1, 16, 16),
        (None, 2, 16, 8),  # two jobs at once: half the cores each
        (None, 3, 16, 5),  # floor: 3 x 5 <= 16
        (None, 4, 2, 1),  # more jobs than cores: one thread each, never 0
        (None, -1, 16, 1),  # joblib's -1: one job per core
    ],
)
def test_default_threads_splits_the_cores_between_parallel_jobs(threads, jobs, cores, expected):
    from sglp.core.device import default_threads

    assert default_threads(threads, jobs, cores) == expected
