"""Tests of diffnb.theory.spectral: closed forms, polynomial references, sampled matrices, the digest's numbers."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from diffnb.theory import spectral as sp


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Mid-size eigenproblems run faster on one BLAS thread on a shared 2-core machine."""
    with threadpool_limits(1, user_api="blas"):
        yield


TWO = ([0.2, 0.2], [1.0, 0.09])  # the two-block example of the digest (sigma = 1 and 0.3)
THREE = ([0.1, 0.15, 0.2], [4.0, 1.0, 0.1])


def polynomial_density(lam: np.ndarray, alphas, sigma2s) -> np.ndarray:
    """Reference: clear the denominators of the Silverstein equation and take the root with Im g > 0.

    g (z prod_k (1 + s_k g) - sum_k a_k s_k prod_{j != k} (1 + s_j g)) + prod_k (1 + s_k g) = 0, degree K + 1.
    For real z it has at least K - 1 real roots, so at most one conjugate pair: its imaginary part is pi rho.
    """
    a, s = np.asarray(alphas, float), np.asarray(sigma2s, float)
    P = np.poly1d([1.0])
    for sk in s:
        P = P * np.poly1d([sk, 1.0])
    Q = np.poly1d([0.0])
    for k in range(s.size):
        R = np.poly1d([a[k] * s[k]])
        for j in range(s.size):
            if j != k:
                R = R * np.poly1d([s[j], 1.0])
        Q = Q + R
    out = []
    for z in np.atleast_1d(lam):
        poly = np.poly1d([1.0, 0.0]) * (P * float(z) - Q) + P
        out.append(max(np.roots(poly.coeffs).imag.max(), 0.0) / np.pi)
    return np.array(out)


# ------------------------------------------------------------------------------------------------------
# Marchenko-Pastur: closed form
# ------------------------------------------------------------------------------------------------------


def test_mp_edges_values_and_broadcast():
    lo, hi = sp.mp_edges(1.0, 0.4)
    assert lo == pytest.approx(0.1351, abs=5e-5) and hi == pytest.approx(2.6649, abs=5e-5)
    lo, hi = sp.mp_edges(np.array([1.0, 0.09]), 0.2)
    assert lo.shape == (2,) and hi[1] == pytest.approx(0.09 * (1 + np.sqrt(0.2)) ** 2)


@pytest.mark.parametrize("alpha,sigma2", [(0.4, 1.0), (0.1, 2.5), (0.8, 0.3)])
def test_density_matches_closed_form_mp(alpha, sigma2):
    lo, hi = sp.mp_edges(sigma2, alpha)
    lam = np.concatenate(
        [np.linspace(1e-4, 1.2 * hi, 1500), np.outer([lo, hi], 1 + np.array([-1e-3, -1e-8, 0, 1e-8, 1e-3])).ravel()]
    )
    ref = sp.mp_density(lam, sigma2, alpha)
    # exactly at an edge (a double root) float64 leaves ~sqrt(eps) of the density scale
    np.testing.assert_allclose(sp.covariance_density(lam, [alpha], [sigma2]), ref, rtol=0, atol=1e-7 * ref.max())


def test_mp_support_and_mass():
    ((lo, hi),) = sp.covariance_support([0.4], [1.0])
    assert (lo, hi) == pytest.approx(sp.mp_edges(1.0, 0.4), rel=1e-12)
    assert sp.bulk_masses([0.4], [1.0]) == pytest.approx([0.4], abs=1e-6)
    # alpha > 1: full rank, no atom, mass 1, edges s (sqrt(alpha) -+ 1)^2
    ((lo, hi),) = sp.covariance_support([2.0], [1.0])
    assert lo == pytest.approx((np.sqrt(2) - 1) ** 2, rel=1e-10) and hi == pytest.approx((np.sqrt(2) + 1) ** 2)
    assert sp.bulk_masses([2.0], [1.0]) == pytest.approx([1.0], abs=1e-6)
    # sum(alphas) == 1: hard edge at 0
    ((lo, hi),) = sp.covariance_support([1.0], [1.0])
    assert lo == 0.0 and hi == pytest.approx(4.0)
    assert sp.bulk_masses([1.0], [1.0]) == pytest.approx([1.0], abs=1e-4)


# ------------------------------------------------------------------------------------------------------
# several blocks: polynomial reference, edges, masses, consistency
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alphas,sigma2s", [TWO, THREE, ([0.3, 0.4, 0.5], [2.0, 1.0, 0.5])])
def test_density_matches_polynomial_roots(alphas, sigma2s):
    edges = np.ravel(sp.covariance_support(alphas, sigma2s))
    lam = np.concatenate(
        [np.linspace(1e-3, 1.1 * edges.max(), 400), np.outer(edges, 1 + np.array([-1e-6, 1e-6])).ravel()]
    )
    np.testing.assert_allclose(
        sp.covariance_density(lam, alphas, sigma2s), polynomial_density(lam, alphas, sigma2s), rtol=0, atol=1e-9
    )


@pytest.mark.parametrize("alphas,sigma2s", [TWO, THREE])
def test_density_vanishes_exactly_outside_support(alphas, sigma2s):
    bulks = sp.covariance_support(alphas, sigma2s)
    assert len(bulks) == len(alphas) == sp.n_bulks(alphas, sigma2s)
    for lo, hi in bulks:
        outside = sp.covariance_density(np.array([lo * (1 - 1e-9), hi * (1 + 1e-9)]), alphas, sigma2s)
        inside = sp.covariance_density(np.array([lo * (1 + 1e-6), hi * (1 - 1e-6)]), alphas, sigma2s)
        assert np.all(outside < 1e-12) and np.all(inside > 1e-5)
        # square-root edges: rho(edge + eps) / sqrt(eps) is about constant
        r = sp.covariance_density(lo + np.array([1e-6, 1e-8]) * lo, alphas, sigma2s)
        assert r[0] / r[1] == pytest.approx(10.0, rel=1e-2)


@pytest.mark.parametrize("alphas,sigma2s", [TWO, THREE])
def test_masses_of_detached_bulks_are_the_alphas(alphas, sigma2s):
    masses = sp.bulk_masses(alphas, sigma2s)  # ascending bulks <-> ascending variances
    order = np.argsort(sigma2s)
    np.testing.assert_allclose(masses, np.asarray(alphas)[order], atol=1e-6)
    # and a plain fine-grid integral of the density gives the same total
    lam = np.linspace(1e-5, np.ravel(sp.covariance_support(alphas, sigma2s)).max(), 40001)
    assert np.trapezoid(sp.covariance_density(lam, alphas, sigma2s), lam) == pytest.approx(sum(alphas), abs=5e-4)


def test_cdf_is_monotone_and_reaches_total_mass():
    lam = np.linspace(0, 3, 500)
    cdf = sp.covariance_cdf(lam, *TWO)
    assert np.all(np.diff(cdf) >= -1e-15) and cdf[0] == 0 and cdf[-1] == pytest.approx(0.4, abs=1e-6)
    gap = np.mean(sp.covariance_support(*TWO)[0][1:] + sp.covariance_support(*TWO)[1][:1])
    assert sp.covariance_cdf(gap, *TWO) == pytest.approx(0.2, abs=1e-6)


def test_stieltjes_solves_equation_and_derivative_is_inverse():
    a, s = np.array(THREE[0]), np.array(THREE[1])
    rng = np.random.default_rng(0)
    z = rng.uniform(0, 8, 200) + 1j * 10 ** rng.uniform(-9, 0.5, 200)
    g = sp.stieltjes_transform(z, a, s)
    assert np.all(g.imag > 0)
    np.testing.assert_allclose(-1 / (z - (a * s / (1 + s * g[:, None])).sum(-1)), g, rtol=1e-10)
    # dg/dz = 1 / z'(g), by a complex central difference
    z0, h = np.array([1.3 + 0.2j]), 1e-5
    dg = (sp.stieltjes_transform(z0 + h, a, s) - sp.stieltjes_transform(z0 - h, a, s)) / (2 * h)
    g0 = sp.stieltjes_transform(z0, a, s)
    assert dg[0] == pytest.approx(1 / (1 / g0[0] ** 2 - (a * s**2 / (1 + s * g0[0]) ** 2).sum()), rel=1e-6)


def test_critical_points_of_the_inverse_map_are_the_edges():
    g_star, edges = sp.critical_points(*THREE)
    np.testing.assert_allclose(edges, np.ravel(sp.covariance_support(*THREE)), rtol=1e-12)
    np.testing.assert_allclose(sp.inverse_stieltjes(g_star, *THREE), edges, rtol=1e-12)
    h = 1e-5 * np.abs(g_star)
    slope = (sp.inverse_stieltjes(g_star + h, *THREE) - sp.inverse_stieltjes(g_star - h, *THREE)) / (2 * h)
    assert np.all(np.abs(slope) < 1e-6 * np.abs(edges / g_star))
    # off the support the (real) Stieltjes transform inverts the map: z(g(x)) = x
    x = np.array([0.25, 2.0, 8.0])  # in the two gaps and above the top edge
    g = sp.stieltjes_transform(x + 0j, *THREE)
    np.testing.assert_allclose(g.imag, 0, atol=1e-12)
    np.testing.assert_allclose(sp.inverse_stieltjes(g.real, *THREE), x, rtol=1e-10)


def test_merging_bulks_are_detected_exactly():
    # with variances 1 and r, the exact bulks of alpha = 0.2 + 0.2 merge between r = 0.25 and r = 0.27
    assert sp.n_bulks([0.2, 0.2], [1.0, 0.25]) == 2
    assert sp.n_bulks([0.2, 0.2], [1.0, 0.27]) == 1
    # while the detached approximation already merges them at r = ((1 - sqrt .2) / (1 + sqrt .2))^2 = 0.146
    assert sp.n_bulks([0.2, 0.2], [1.0, 0.2], approximation="detached") == 1
    assert sp.intermediate_edges([0.2, 0.2], [1.0, 0.2], approximation="detached") == []
    assert len(sp.intermediate_edges([0.2, 0.2], [1.0, 0.2])) == 1


def test_equal_variances_merge_into_one_block():
    np.testing.assert_allclose(
        sp.covariance_density([0.5, 1.0], [0.1, 0.3], [1.0, 1.0]), sp.mp_density([0.5, 1.0], 1.0, 0.4), atol=1e-10
    )


# ------------------------------------------------------------------------------------------------------
# continuous distribution of variances
# ------------------------------------------------------------------------------------------------------


def test_continuous_variances_quadrature_converges_and_has_one_bulk():
    lam = np.linspace(0.01, 2.0, 50)
    dens = {
        n: sp.covariance_density(
            lam, *sp.variance_quadrature(0.4, density=lambda s: 1 / np.sqrt(s), bounds=(0.09, 1.0), n_nodes=n)
        )
        for n in (32, 128)
    }
    np.testing.assert_allclose(dens[32], dens[128], atol=1e-8)
    a, s = sp.variance_quadrature(0.4, density=lambda s: 1 / np.sqrt(s), bounds=(0.09, 1.0))
    assert a.sum() == pytest.approx(0.4) and sp.n_bulks(a, s) == 1
    # samples of sigma^2 = sigma^2 with sigma ~ U(0.3, 1) give the same law
    sig = np.random.default_rng(0).uniform(0.3, 1.0, 20000)
    dens_samples = sp.covariance_density(lam, *sp.variance_quadrature(0.4, samples=sig**2))
    np.testing.assert_allclose(dens_samples, dens[128], atol=0.02)


# ------------------------------------------------------------------------------------------------------
# the normalised Jacobian
# ------------------------------------------------------------------------------------------------------


def test_jacobian_density_change_of_variables_and_mass():
    t = 0.3
    mu = np.linspace(-1, 0, 20001)[1:-1]
    rho = sp.jacobian_density(mu, t, *TWO)
    assert np.trapezoid(rho, mu) == pytest.approx(0.4, abs=1e-3)
    assert sp.jacobian_atom_mass(TWO[0]) == pytest.approx(0.6)
    assert sp.jacobian_atom_mass([0.7, 0.5]) == 0.0
    lam = 0.8
    assert sp.jacobian_density(-t / (lam + t), t, *TWO) == pytest.approx(
        sp.covariance_density(lam, *TWO) * (lam + t) ** 2 / t
    )
    assert np.all(sp.jacobian_density(np.array([-1.5, -1.0, 0.0, 0.5]), t, *TWO) == 0)
    supp = sp.jacobian_support(t, *TWO)
    assert supp.shape == (2, 2) and np.all((supp > -1) & (supp < 0))
    assert sp.jacobian_support(np.array([0.1, 1.0]), *TWO).shape == (2, 2, 2)


def test_higher_variance_bulk_leaves_minus_one_first():
    # as t decreases, the bulk that first reaches distance delta from -1 is the high-variance one ...
    delta = 0.1
    for sigma2s in ([1.0, 0.09], [0.09, 1.0]):
        bulks = sp.covariance_support([0.2, 0.2], sigma2s)
        leave = [hi * (1 - delta) / delta for _, hi in bulks]
        assert leave[1] > leave[0]  # bulks are ascending in lambda: the last one is the high-variance bulk
    # ... and swapping the variances swaps which block (of different sizes) it is: the first bulk to leave
    # has mass m_high / d
    for ms, sigma2s, first in (([0.1, 0.3], [1.0, 0.09], 0.1), ([0.1, 0.3], [0.09, 1.0], 0.3)):
        assert sp.bulk_masses(ms, sigma2s)[-1] == pytest.approx(first, abs=1e-6)


# ------------------------------------------------------------------------------------------------------
# gaps, times, phases; the digest's numbers (§4.3)
# ------------------------------------------------------------------------------------------------------


def test_single_variance_numbers_of_the_digest():
    gm, gp = sp.mp_edges(1.0, 0.4)
    assert sp.manifold_gap(np.array([1.0, 0.1, 0.01]), gm) == pytest.approx([0.119, 0.575, 0.931], abs=6e-4)
    assert sp.manifold_gap_time(gm, 0.1) == pytest.approx(1.216, abs=6e-4)
    t_triv, t_cons = sp.phase_boundaries([0.4], [1.0], 0.1)
    assert t_triv == pytest.approx(24.0, abs=0.05) and t_cons == pytest.approx(0.015, abs=5e-4)
    t_triv, t_cons = sp.phase_boundaries([0.4], [1.0], 0.5)
    assert (t_triv, t_cons, sp.manifold_gap_time(gm, 0.5)) == pytest.approx((2.66, 0.135, 0.135), abs=6e-3)
    assert sp.phase_boundaries([0.4], [1.0], 0.1, approximation="detached") == pytest.approx(
        sp.phase_boundaries([0.4], [1.0], 0.1), rel=1e-10
    )


def test_two_variance_numbers_of_the_digest():
    ((a, b),) = sp.intermediate_edges(*TWO)
    # The digest located the exact bulks by thresholding a density at finite eta (edges about 2e-3 inside);
    # here they are the critical values of z(g).
    bulks = sp.covariance_support(*TWO)
    np.testing.assert_allclose(np.ravel(bulks), [0.019, 0.156, 0.329, 2.112], atol=2.5e-3)
    assert sp.gap_peak_time(a, b) == pytest.approx(0.227, abs=6e-4)
    assert sp.gap_peak_width(a, b) == pytest.approx(0.184, abs=4e-3)
    t_close, t_open = sp.gap_window(a, b, 0.05)
    assert t_close == pytest.approx(0.018, abs=6e-4) and t_open == pytest.approx(2.89, abs=6e-3)
    ((ad, bd),) = sp.intermediate_edges(*TWO, approximation="detached")
    assert (ad, bd) == pytest.approx((0.306, 0.189), abs=6e-4)
    assert sp.gap_peak_time(ad, bd) == pytest.approx(0.240, abs=6e-4)
    assert sp.gap_peak_width(ad, bd) == pytest.approx(0.120, abs=6e-4)
    t_close, t_open = sp.gap_window(ad, bd, 0.05)
    assert t_close == pytest.approx(0.032, abs=6e-4) and t_open == pytest.approx(1.82, abs=6e-3)
    # "the approximation underestimates the gap by about a third"
    assert 1 - sp.gap_peak_width(ad, bd) / sp.gap_peak_width(a, b) == pytest.approx(0.34, abs=0.03)


def test_gap_formulas_are_consistent():
    a, b = 0.33, 0.16
    t = np.geomspace(1e-3, 1e2, 20001)
    gap = sp.intermediate_gap(t, a, b)
    assert t[np.argmax(gap)] == pytest.approx(sp.gap_peak_time(a, b), rel=1e-3)
    assert gap.max() == pytest.approx(sp.gap_peak_width(a, b), rel=1e-6)
    t_close, t_open = sp.gap_window(a, b, 0.1)
    assert t_close * t_open == pytest.approx(sp.gap_peak_time(a, b) ** 2, rel=1e-12)
    assert sp.intermediate_gap(np.array([t_close, t_open]), a, b) == pytest.approx([0.1, 0.1], rel=1e-10)
    assert sp.gap_window(a, b, sp.gap_peak_width(a, b) * 1.01) is None
    assert sp.manifold_gap(1e-12, 0.1) == pytest.approx(1.0) and sp.manifold_gap(1e12, 0.1) < 1e-12
    assert isinstance(sp.intermediate_gap(0.2, a, b), float)


# ------------------------------------------------------------------------------------------------------
# sampled matrices (seeded)
# ------------------------------------------------------------------------------------------------------


def test_sampled_matrices_agree_with_theory():
    d, m1 = 1000, 200
    lam = sp.sample_covariance_eigvals(d, [m1, m1], TWO[1], rng=0)[0]
    assert lam.shape == (2 * m1,)
    assert sp.ks_distance(lam, *TWO) < 0.02
    bulks = sp.covariance_support(*TWO)
    assert lam[-1] == pytest.approx(bulks[1][1], rel=0.04)
    assert lam[-m1] == pytest.approx(bulks[1][0], rel=0.08) and lam[-m1 - 1] == pytest.approx(bulks[0][1], rel=0.08)
    # exact separation: exactly m1 eigenvalues above the gap
    assert np.sum(lam > np.mean([bulks[0][1], bulks[1][0]])) == m1
    t_peak, width = sp.sampled_gap_peak(lam, m1)
    assert t_peak == pytest.approx(np.sqrt(lam[-m1] * lam[-m1 - 1]), rel=1e-6)
    assert t_peak == pytest.approx(sp.gap_peak_time(*sp.intermediate_edges(*TWO)[0]), rel=0.05)
    # the Gram trick gives the non-zero eigenvalues of the d x d matrix F F^T built from the same draws
    small = sp.sample_covariance_eigvals(30, [5, 7], [1.0, 0.5], rng=np.random.default_rng(1))[0]
    F = np.random.default_rng(1).standard_normal((30, 12)) * np.repeat(np.sqrt(np.array([1.0, 0.5]) / 30), [5, 7])
    np.testing.assert_allclose(small, np.linalg.eigvalsh(F @ F.T)[-12:], rtol=1e-10, atol=1e-12)


def test_sampled_stieltjes_transform():
    d = 800
    lam = sp.sample_covariance_eigvals(d, [160, 160], TWO[1], rng=3)[0]
    z = np.array([0.2 + 0.3j, 1.0 + 0.5j])
    g_sample = (np.sum(1 / (lam[None, :] - z[:, None]), 1) - (d - lam.size) / z) / d
    np.testing.assert_allclose(sp.stieltjes_transform(z, *TWO), g_sample, rtol=1e-2)


# ------------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: sp.covariance_density([1.0], [0.2], [-1.0]), "sigma2s"),
        (lambda: sp.covariance_density([1.0], [0.2], [0.0]), "sigma2s"),
        (lambda: sp.covariance_support([0.0, 0.2], [1.0, 0.5]), "alphas"),
        (lambda: sp.covariance_support([np.nan], [1.0]), "alphas"),
        (lambda: sp.covariance_support([-0.2], [1.0]), "alphas"),
        (lambda: sp.covariance_support([0.2, 0.2], [1.0]), "same length"),
        (lambda: sp.covariance_support([], []), "alphas"),
        (lambda: sp.mp_edges(-1.0, 0.4), "sigma2"),
        (lambda: sp.mp_edges(1.0, 0.0), "alpha"),
        (lambda: sp.mp_edges(1.0, np.inf), "alpha"),
        (lambda: sp.jacobian_density([-0.5], 0.0, [0.2], [1.0]), "t"),
        (lambda: sp.jacobian_density([-0.5], -1.0, [0.2], [1.0]), "t"),
        (lambda: sp.jacobian_density([-0.5], np.inf, [0.2], [1.0]), "t"),
        (lambda: sp.jacobian_density([-0.5], np.nan, [0.2], [1.0]), "t"),
        (lambda: sp.manifold_gap(0.0, 0.1), "t"),
        (lambda: sp.manifold_gap(1.0, -0.1), "gamma_minus"),
        (lambda: sp.intermediate_gap(-1.0, 0.3, 0.1), "t"),
        (lambda: sp.intermediate_gap(1.0, 0.1, 0.3), "must exceed b"),
        (lambda: sp.gap_peak_time(0.1, 0.1), "must exceed b"),
        (lambda: sp.gap_window(0.3, 0.1, 1.5), "delta"),
        (lambda: sp.gap_window(0.3, 0.1, 0.0), "delta"),
        (lambda: sp.phase_boundaries([0.2], [1.0], 1.0), "delta"),
        (lambda: sp.phase_boundaries([0.2], [1.0], 0.1, approximation="replica"), "approximation"),
        (lambda: sp.variance_quadrature(0.4), "exactly one"),
        (lambda: sp.variance_quadrature(0.4, density=np.ones_like), "bounds"),
        (lambda: sp.variance_quadrature(0.4, samples=[1.0, -2.0]), "samples"),
        (lambda: sp.variance_quadrature(0.4, samples=[1.0], n_nodes=0), "n_nodes"),
        (lambda: sp.sample_covariance_eigvals(10, [2, 3], [1.0]), "same length"),
        (lambda: sp.sample_covariance_eigvals(0, [2], [1.0]), "d must"),
        (lambda: sp.sample_covariance_eigvals(10, [2.5], [1.0]), "ms"),
        (lambda: sp.stieltjes_transform([1 - 1j], [0.2], [1.0]), "imaginary"),
        (lambda: sp.sampled_gap_peak([1.0, 2.0], 2), "n_above"),
        (lambda: sp.leave_time(-1.0, 0.1), "lam"),
        (lambda: sp.arrival_time([1.0, np.nan], 0.1), "lam"),
        (lambda: sp.leave_time(1.0, 1.0), "delta"),
        (lambda: sp.classical_eigenvalues([0.4], [1.0], 0), "d must"),
        (lambda: sp.classical_eigenvalues([0.4], [1.0], 10.0), "d must"),
        (lambda: sp.sorted_jacobian_spectrum(0.1, [0.4], [1.0], 10, n_smallest=11), "n_smallest"),
        (lambda: sp.sorted_jacobian_spectrum(-0.1, [0.4], [1.0], 10), "t"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# ---------------------------------------------------------------------------------- edge times, sorted spectra


def test_leave_and_arrival_times_are_where_the_eigenvalue_crosses_delta():
    lam = np.array([0.0, 0.135, 1.0, 2.66])
    for delta in (0.05, 0.1, 0.5, 0.9):
        t_leave, t_arrive = sp.leave_time(lam, delta), sp.arrival_time(lam, delta)
        pos = lam > 0
        # -t/(lam + t) is -1 + delta at t_leave, t/(lam + t) is delta at t_arrive
        np.testing.assert_allclose(-t_leave[pos] / (lam[pos] + t_leave[pos]), -1 + delta, rtol=1e-12)
        np.testing.assert_allclose(t_arrive[pos] / (lam[pos] + t_arrive[pos]), delta, rtol=1e-12)
        assert t_leave[0] == t_arrive[0] == 0.0
    assert isinstance(sp.leave_time(1.0, 0.1), float)
    # phase_boundaries and manifold_gap_time are these times at the edges of the spectrum of C
    (lo, hi), delta = sp.covariance_support([0.4], [1.0])[0], 0.1
    assert sp.phase_boundaries([0.4], [1.0], delta) == (sp.leave_time(hi, delta), sp.arrival_time(lo, delta))
    assert sp.manifold_gap_time(lo, delta) == sp.leave_time(lo, delta)


def _mp_quantile_reference(alpha, sigma2, d):
    """Classical locations of one Marchenko-Pastur bulk by adaptive quadrature and root finding (closed-form
    density, independent of the Silverstein solver and of the module's cumulative mass)."""
    from scipy import integrate, optimize

    lo, hi = sigma2 * (1 - np.sqrt(alpha)) ** 2, sigma2 * (1 + np.sqrt(alpha)) ** 2

    def density(x):  # normalised over all d eigenvalues: integrates to alpha
        return np.sqrt(max((hi - x) * (x - lo), 0.0)) / (2 * np.pi * sigma2 * x)

    def mass_above(x):
        return integrate.quad(density, x, hi, epsabs=1e-13, epsrel=1e-12, limit=200)[0]

    out = []
    for k in range(1, d + 1):
        target = (k - 0.5) / d
        if target >= alpha:
            out.append(0.0)
        else:
            out.append(optimize.brentq(lambda x, q=target: mass_above(x) - q, lo, hi, xtol=1e-14))
    return np.sort(out)


def test_classical_eigenvalues_of_one_block_against_quadrature():
    d = 50
    lam = sp.classical_eigenvalues([0.4], [1.0], d)
    ref = _mp_quantile_reference(0.4, 1.0, d)
    assert lam.shape == (d,) and np.all(np.diff(lam) >= 0)
    assert np.sum(lam == 0) == 30  # the atom holds d - m = 30 ranks
    np.testing.assert_allclose(lam, ref, rtol=2e-5, atol=0)


def test_classical_eigenvalues_of_two_blocks_against_quadrature_of_the_density():
    from scipy import integrate

    d = 40
    alphas, sigma2s = [0.25, 0.125], [1.0, 0.04]
    lam = sp.classical_eigenvalues(alphas, sigma2s, d)
    bulks = sp.covariance_support(alphas, sigma2s)

    def mass_above(x):
        total = 0.0
        for lo, hi in bulks:
            a = min(max(x, lo), hi)
            total += integrate.quad(sp.covariance_density, a, hi, args=(alphas, sigma2s), limit=200)[0]
        return total

    top = lam[::-1][:15]  # the m = 15 tangent ranks, largest first
    for k, value in enumerate(top, start=1):
        assert mass_above(value) == pytest.approx((k - 0.5) / d, abs=2e-5)
    assert np.all(lam[:-15] == 0)
    # every value lies inside a bulk
    assert all(any(lo - 1e-12 <= v <= hi + 1e-12 for lo, hi in bulks) for v in top)


def test_sorted_jacobian_spectrum_maps_the_classical_eigenvalues():
    alphas, sigma2s, d = [0.25, 0.125], [1.0, 0.04], 40
    lam = sp.classical_eigenvalues(alphas, sigma2s, d)
    t = np.array([0.01, 0.1, 1.0])
    v = sp.sorted_jacobian_spectrum(t, alphas, sigma2s, d)
    assert v.shape == (3, d) and np.all(np.diff(v, axis=-1) >= 0)
    np.testing.assert_allclose(v, np.sort(t[:, None] / (lam + t[:, None]), axis=-1), rtol=1e-14)
    assert np.all(v[:, 15:] == 1.0)  # the normal atom
    small = sp.sorted_jacobian_spectrum(0.1, alphas, sigma2s, d, n_smallest=15)
    np.testing.assert_array_equal(small, v[1, :15])
    # against sampled matrices at larger d: the mean sorted spectrum follows the theory's
    d_big = 400
    samples = sp.sample_covariance_eigvals(d_big, [100, 50], sigma2s, rng=0, n_samples=4)
    sampled = np.sort(0.1 / (samples + 0.1), axis=-1).mean(axis=0)
    theory = sp.sorted_jacobian_spectrum(0.1, alphas, sigma2s, d_big, n_smallest=150)
    assert np.abs(sampled - theory).max() < 0.02
