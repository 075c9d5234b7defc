"""Tests of diffnb.theory.memorization: reference numbers of the digest, limits, and exact numerics."""

from __future__ import annotations

import numpy as np
import pytest

from diffnb.theory import memorization as mem

# The memorization paper's theory panel: 2 directions at scale 1, 5 at 0.3, 23 at 1e-6 (d = 30).
PAPER_SCALES = np.r_[np.ones(2), 0.3 * np.ones(5), 1e-6 * np.ones(23)]


# ------------------------------------------------------------------------------- reference numbers


def test_critical_noise_normalized_matches_digest_reference():
    v = mem.critical_noise(PAPER_SCALES, 1000)
    assert v.shape == (30,)
    assert v[0] == pytest.approx(0.0724, abs=5e-5)
    assert v[2] == pytest.approx(0.00651, abs=5e-6)
    assert v[0] == pytest.approx(1 / (2 * np.log(1000)))


@pytest.mark.parametrize(
    ("n_train", "v1", "v2"),
    [(10, 0.217, 0.0195), (100, 0.109, 0.0098), (500, 0.0805, 0.0072), (5000, 0.0587, 0.0053), (20000, 0.0505, 0.0045)],
)
def test_critical_noise_table_of_the_digest(n_train, v1, v2):
    v = mem.critical_noise(PAPER_SCALES, n_train)
    assert v[0] == pytest.approx(v1, abs=6e-4)
    assert v[2] == pytest.approx(v2, abs=6e-5)


def test_critical_noise_unnormalized_matches_digest_reference():
    v = mem.critical_noise(PAPER_SCALES, 1000, normalized=False)
    assert v[0] == pytest.approx(0.310, abs=1e-3)
    assert v[2] == pytest.approx(0.275, abs=1e-3)
    assert mem.norm_critical_noise(PAPER_SCALES, 1000) == pytest.approx(0.272, abs=1e-3)
    # a direction of (almost) zero variance freezes at the norm threshold
    assert v[-1] == pytest.approx(float(mem.norm_critical_noise(PAPER_SCALES, 1000)), rel=1e-9)


def test_critical_noise_is_the_fixed_point_of_the_official_t_c():
    for normalized, g in ((True, 0.0), (False, 1.0)):
        v = mem.critical_noise(PAPER_SCALES, 777, normalized=normalized)
        s2 = PAPER_SCALES**2
        t_c = np.sqrt((g * np.sum(s2**2) / 2 + v * s2) / (2 * np.log(777)))
        np.testing.assert_allclose(t_c, v, rtol=1e-12)


def test_critical_noise_vectorised_over_n_train_and_decreasing():
    v = mem.critical_noise(PAPER_SCALES, np.array([[10, 100], [1000, 10000]]))
    assert v.shape == (2, 2, 30)
    flat = v.reshape(4, 30)
    assert np.all(np.diff(flat[:, 0]) < 0)
    np.testing.assert_allclose(flat[2], mem.critical_noise(PAPER_SCALES, 1000))


def test_critical_size_is_the_inverse_of_critical_noise():
    scales = np.array([1.0, 0.3, 0.01])
    for normalized in (True, False):
        v = mem.critical_noise(scales, 2500.0, normalized=normalized)
        for i in range(3):
            p_star = mem.critical_size(scales, v[i], normalized=normalized)[i]
            assert p_star == pytest.approx(2500.0, rel=1e-9)
    # normalised closed form and shape
    t = np.array([0.1, 0.01])
    np.testing.assert_allclose(mem.critical_size(scales, t), np.exp(scales**2 / (2 * t[:, None])))
    assert mem.critical_size(scales, 1e-6)[0] == np.inf  # overflow is reported as inf, without warnings


def test_high_variance_direction_has_larger_thresholds():
    v = mem.critical_noise([1.0, 0.3], 1000)
    p = mem.critical_size([1.0, 0.3], 0.01)
    assert v[0] > v[1] and p[0] > p[1]


# ----------------------------------------------------------------------------------- theory spectrum


def _plotted(t, n_train=1000, normalized=True, drop=7):
    s = mem.predicted_singular_values(t, PAPER_SCALES, n_train, normalized)
    s = np.sort(s, axis=-1)[..., ::-1][..., drop:]
    return s / s[..., :1]


def test_predicted_singular_values_reproduce_the_digest_values():
    # digest §1.5: 0.5 at v=1 for the sigma=1 pair, 0.92 -> 0.53 for the sigma=0.3 block, 0.44 at v=0.07
    assert _plotted(1.0)[-1] == pytest.approx(0.5, abs=1e-3)
    assert _plotted(1.0)[-3] == pytest.approx(0.917, abs=1e-3)
    assert _plotted(0.1)[-1] == pytest.approx(0.0909, abs=1e-3)
    assert _plotted(0.1)[-3] == pytest.approx(0.526, abs=1e-3)
    assert _plotted(0.07)[-1] == pytest.approx(0.4375, abs=1e-3)
    assert _plotted(0.01)[-1] == pytest.approx(0.10, abs=2e-3)


@pytest.mark.parametrize(
    ("t", "dim"), [(0.5, 7), (0.08, 7), (0.07, 5), (0.01, 5), (0.0066, 5), (0.0064, 0), (0.002, 0)]
)
def test_theory_spectrum_loses_the_high_variance_pair_first(t, dim):
    values = _plotted(t)
    assert int(np.sum(values < 0.95)) == dim


def test_predicted_singular_values_equal_exact_score_before_freezing():
    t = np.array([0.5, 0.2])
    s = mem.predicted_singular_values(t, PAPER_SCALES, 1000)
    np.testing.assert_allclose(s, 1 / (t[:, None] + PAPER_SCALES**2), rtol=1e-12)
    assert s.shape == (2, 30)


def test_predicted_singular_values_broadcast_t_and_n_train():
    s = mem.predicted_singular_values(np.array([0.05, 0.05]), PAPER_SCALES, np.array([100, 1e6]))
    assert s.shape == (2, 30)
    # more data: the pair is frozen at P=100 (v*=0.109) but not at P=1e6 (v*=0.036)
    assert s[0, 0] > 1 / 0.05 and s[1, 0] == pytest.approx(1 / 1.05)


def test_unnormalized_theory_collapses_almost_together():
    v = mem.critical_noise(PAPER_SCALES, 1000, normalized=False)
    v0 = mem.norm_critical_noise(PAPER_SCALES, 1000)
    assert v[0] / v0 < 1.15
    s = mem.predicted_singular_values(0.26, PAPER_SCALES, 1000, normalized=False)
    assert np.all(s[:7] > 1 / 0.26)  # every tangent direction has jumped above the normal bulk


# ------------------------------------------------------------------------------------------- REM


def test_condensation_threshold():
    np.testing.assert_allclose(mem.condensation_threshold([2, 1000]), 2 * np.log([2, 1000]))


def test_energy_variance_matches_sampled_energies():
    rng = np.random.default_rng(0)
    scales = np.array([1.0, 0.5, 0.2])
    x = np.array([0.7, -0.4, 1.2])
    t = 0.3
    for normalized in (True, False):
        y = rng.standard_normal((400_000, 3)) * scales
        energies = -(x @ y.T) / t + (0 if normalized else 1) * (y**2).sum(1) / (2 * t)
        assert mem.energy_variance(x, t, scales, normalized) == pytest.approx(energies.var(), rel=0.02)


def test_energy_variance_shapes_and_direction_version():
    x = np.zeros((4, 5, 3))
    assert mem.energy_variance(x, 0.1, [1.0, 1.0, 1.0]).shape == (4, 5)
    t = np.array([0.1, 0.2])
    V = mem.direction_energy_variance(t, [1.0, 0.3])
    np.testing.assert_allclose(V, np.array([[1.0, 0.09]]) / t[:, None])
    # x_i^2 = t in one direction reproduces the per-direction value
    xi = np.array([np.sqrt(0.1), 0.0])
    assert mem.energy_variance(xi, 0.1, [1.0, 0.3]) == pytest.approx(V[0, 0])


def test_rem_log_partition_phases_and_continuity():
    log_p = np.log(1000)
    V = np.array([0.0, 2 * log_p - 1e-9, 2 * log_p + 1e-9, 50.0])
    lz = mem.rem_log_partition(V, 1000)
    assert lz[0] == pytest.approx(log_p)
    assert lz[1] == pytest.approx(lz[2], abs=1e-6)  # continuous at condensation
    assert lz[3] == pytest.approx(np.sqrt(2 * 50 * log_p))


def test_effective_sample_size_limits_and_orders():
    P = 1000
    assert mem.effective_sample_size(0.0, P) == pytest.approx(P)
    assert mem.effective_sample_size(1.0, P) == pytest.approx(P * np.exp(-1.0))
    assert mem.effective_sample_size(1.0, P, order=1) == pytest.approx(P * np.exp(-0.5))
    assert mem.effective_sample_size(5.0, P) == pytest.approx(np.exp((np.sqrt(2 * np.log(P)) - np.sqrt(5.0)) ** 2))
    assert mem.effective_sample_size(40.0, P) == pytest.approx(1.0)
    assert mem.effective_sample_size(40.0, P, order=1) == pytest.approx(1.0)
    # q -> 1 is continuous, and Renyi entropies decrease with the order
    assert mem.effective_sample_size(3.0, P, order=1 + 1e-7) == pytest.approx(
        float(mem.effective_sample_size(3.0, P, order=1)), rel=1e-5
    )
    V = np.linspace(0, 20, 41)
    assert np.all(mem.effective_sample_size(V, P, order=1) >= mem.effective_sample_size(V, P, order=2) - 1e-9)


def test_effective_sample_size_against_sampled_gaussian_rem():
    rng = np.random.default_rng(1)
    P, V = 20000, 2.0  # deep in the high-temperature phase, where the leading order is accurate
    energies = rng.standard_normal((50, P)) * np.sqrt(V)
    w = np.exp(-(energies - energies.min(1, keepdims=True)))
    w /= w.sum(1, keepdims=True)
    measured = np.median(1 / (w**2).sum(1))
    assert measured == pytest.approx(float(mem.effective_sample_size(V, P)), rel=0.1)


def test_gaussian_annealed_sample_size_against_exact_participation_ratio():
    from diffnb.scores import participation_ratio

    rng = np.random.default_rng(2)
    scales = np.r_[np.ones(2), 0.3 * np.ones(5), 0.01 * np.ones(5)]
    P, t = 3000, 0.2
    data = rng.standard_normal((P, 12)) * scales
    x = rng.standard_normal((64, 12)) * np.sqrt(scales**2 + t)
    measured = np.median(participation_ratio(x, data, t))
    predicted = np.median(mem.gaussian_annealed_sample_size(x, t, scales, P))
    assert measured == pytest.approx(predicted, rel=0.25)
    # its small-variance expansion is the Gaussian-energy REM
    tiny = 1e-3 * scales
    x_small = rng.standard_normal((3, 12))
    V = mem.energy_variance(x_small, 1.0, tiny, normalized=False)
    np.testing.assert_allclose(
        mem.gaussian_annealed_sample_size(x_small, 1.0, tiny, 1e6), mem.effective_sample_size(V, 1e6), rtol=1e-5
    )


def test_gaussian_annealed_sample_size_order_one_limit_and_clipping():
    x = np.array([[0.3, -0.2], [2.0, 1.0]])
    a = mem.gaussian_annealed_sample_size(x, 0.5, [1.0, 0.5], 100, order=1)
    b = mem.gaussian_annealed_sample_size(x, 0.5, [1.0, 0.5], 100, order=1 + 1e-7)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    assert np.all(mem.gaussian_annealed_sample_size(x, 1e-4, [1.0, 0.5], 100) == 1.0)
    assert np.all(mem.gaussian_annealed_sample_size(x, 1e4, [1.0, 0.5], 100) <= 100.0)


# ------------------------------------------------------------------------------------ collapse time


def test_collapse_time_isotropic_closed_form():
    for d, P, v in ((2, 10, 1.0), (30, 1000, 0.5), (7, 20000, 2.0)):
        expected = v / (P ** (2 / d) - 1)
        assert mem.collapse_time(np.full(d, v), P) == pytest.approx(expected, rel=1e-12)


def test_collapse_time_solves_the_excess_entropy_condition():
    variances = PAPER_SCALES**2
    roots = mem.collapse_time(variances, [10, 1000, 20000])
    assert isinstance(roots, np.ndarray) and roots.shape == (3,)
    np.testing.assert_allclose(mem.excess_entropy(roots, variances), np.log([10, 1000, 20000]), rtol=1e-12)
    assert np.all(np.diff(roots) < 0)
    assert isinstance(mem.collapse_time(variances, 1000), float)


def test_collapse_time_extreme_spread_of_variances():
    variances = np.r_[1e6, np.full(50, 1e-12)]
    t = mem.collapse_time(variances, 2)
    assert mem.excess_entropy(t, variances) == pytest.approx(np.log(2), rel=1e-10)


def test_excess_entropy_small_variance_limit_is_per_direction_rem():
    t = 10.0
    assert mem.excess_entropy(t, [1e-3, 2e-3]) == pytest.approx((1e-3 + 2e-3) / (2 * t), rel=1e-3)


# ------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [1, 0, -5, 1.5, np.nan, [10, 1]])
def test_n_train_below_two_is_rejected(bad):
    with pytest.raises(ValueError, match="n_train"):
        mem.critical_noise([1.0], bad)
    with pytest.raises(ValueError, match="n_train"):
        mem.collapse_time([1.0], bad)


@pytest.mark.parametrize("bad", [[1.0, 0.0], [1.0, -0.3], [np.inf], [], [[1.0, 0.3]]])
def test_bad_scales_are_rejected(bad):
    with pytest.raises(ValueError, match="scales"):
        mem.critical_noise(bad, 100)
    with pytest.raises(ValueError, match="scales"):
        mem.predicted_singular_values(0.1, bad, 100)


@pytest.mark.parametrize("bad", [0.0, -0.1, np.nan, [0.1, 0.0]])
def test_non_positive_noise_is_rejected(bad):
    with pytest.raises(ValueError, match="t must"):
        mem.critical_size([1.0], bad)
    with pytest.raises(ValueError, match="t must"):
        mem.predicted_singular_values(bad, [1.0], 100)
    with pytest.raises(ValueError, match="t must"):
        mem.excess_entropy(bad, [1.0])


def test_other_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="variances"):
        mem.collapse_time([1.0, 0.0], 10)
    with pytest.raises(ValueError, match="x must"):
        mem.energy_variance(np.zeros(3), 0.1, [1.0, 1.0])
    with pytest.raises(ValueError, match="energy_var"):
        mem.effective_sample_size(-1.0, 10)
    with pytest.raises(ValueError, match="order"):
        mem.effective_sample_size(1.0, 10, order=0)
    with pytest.raises(ValueError, match="beta"):
        mem.rem_log_partition(1.0, 10, beta=-1)
    with pytest.raises(ValueError, match="normalized"):
        mem.critical_noise([1.0], 10, normalized="yes")
