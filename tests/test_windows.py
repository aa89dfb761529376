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


@pytest.mark.parametrize("window", [1, 5, 50])
def test_running_median_from_begin_is_the_tail_of_the_full_one(window):
    """A live detector asks only for the medians it has not computed yet."""
    values = np.random.default_rng(window).lognormal(size=130)
    want = np.asarray(reference.running_median(values.tolist(), window))
    for begin in (0, 1, 3, window - 1, window, 77, 129, 130, 500):
        got = running_median(values, window, begin)
        np.testing.assert_allclose(got, want[begin:], rtol=1e-15)


def test_spike_search_from_begin_finds_the_later_spike_with_the_full_median():
    from graddoctor._signals.gradients import first_spike

    norms = np.random.default_rng(1).lognormal(size=400)
    norms[[20, 260]] = 1e3
    norms[100:110] = np.nan
    assert first_spike(norms)[0] == 20
    finite_before = norms[:260][np.isfinite(norms[:260])]
    for begin in (21, 150, 260):
        index, value, median = first_spike(norms, begin)
        assert (index, value) == (260, 1e3)
        assert median == pytest.approx(float(np.median(finite_before[-50:])), rel=1e-12)
    assert first_spike(norms, 261) is None


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
