"""Least-squares fits recover known constants and refuse data that cannot determine them."""
import numpy as np
import pytest

from longctx.profiling.fit import fit_link, fit_quadratic, relative_errors


def test_quadratic_recovers_exact_coefficients():
    s = np.array([100, 300, 1000, 2500, 7000])
    a, b, c = 2.5, 0.013, 4e-6
    fitted = fit_quadratic(s, a + b * s + c * s * s)
    assert fitted == pytest.approx([a, b, c], rel=1e-6)


def test_quadratic_minimises_relative_error_so_short_samples_count():
    s = np.array([10, 20, 40, 5000, 10000])
    times = 1.0 + 0.01 * s
    times[-1] *= 1.5  # one long outlier must not swamp the short samples
    a, b, c = fit_quadratic(s, times)
    short = a + b * s[:3] + c * s[:3] ** 2
    assert np.allclose(short, times[:3], rtol=0.1), (a, b, c)


def test_quadratic_coefficients_stay_nonnegative():
    s = np.array([100, 200, 400, 800])
    a, b, c = fit_quadratic(s, 50.0 - 0.01 * s)  # decreasing: a negative slope is not physical
    assert min(a, b, c) >= 0


def test_link_recovers_latency_and_bandwidth():
    sizes = np.array([4096, 65536, 1 << 20, 8 << 20])
    latency_s, gbps = 30e-6, 2.5
    latency_us, fitted_gbps = fit_link(sizes, latency_s + sizes / (gbps * 1e9))
    assert latency_us == pytest.approx(30.0, rel=1e-6)
    assert fitted_gbps == pytest.approx(gbps, rel=1e-6)


def test_link_without_growth_in_size_is_an_error():
    with pytest.raises(ValueError, match="do not grow"):
        fit_link([1000, 2000, 4000], [1e-3, 1e-3, 1e-3])


@pytest.mark.parametrize("tokens,times,match", [([1, 2], [1.0, 2.0], "samples for 3"), ([1, 2, 3], [1.0, 0.0, 2.0], "> 0")])
def test_bad_samples_name_the_problem(tokens, times, match):
    with pytest.raises(ValueError, match=match):
        fit_quadratic(tokens, times)


def test_relative_errors():
    assert relative_errors([110.0, 90.0], [100.0, 100.0]) == pytest.approx([0.1, 0.1])
