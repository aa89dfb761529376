"""Sliding-window medians and quantiles against one-window-at-a-time references."""

import numpy as np
import pytest

from graddoctor._windows import running_median, window_statistics
from tests import reference


@pytest.mark.parametrize("window", [1, 2, 5, 50])
def test_running_median_matches_the_slice_by_slice_median(window):
    rng = np.random.default_rng(window)
    for n in (0, 1, 3, 49, 50, 51, 300):
        values = rng.lognormal(size=n)
        if n > 10:
            values[rng.integers(0, n, 3)] = np.nan
        got = running_median(values, window)
        want = reference.running_median(values.tolist(), window)
        np.testing.assert_allclose(got, want, rtol=1e-15, equal_nan=True)


def test_window_statistics_are_each_windows_quantile_and_median():
    values = np.random.default_rng(0).normal(size=200)
    quantiles, medians = window_statistics(values, 10, 0.2)
    assert quantiles.shape == medians.shape == (191,)
    for start in (0, 1, 57, 190):
        window = sorted(values[start : start + 10])
        low = window[1] + 0.8 * (window[2] - window[1])  # the 0.2 quantile, linear interpolation
        assert quantiles[start] == pytest.approx(low, rel=1e-12)
        assert medians[start] == pytest.approx((window[4] + window[5]) / 2, rel=1e-12)
    assert window_statistics(values[:5], 10, 0.2)[0].size == 0
