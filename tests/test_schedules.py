import numpy as np
import pytest
import torch

from diffnb import schedules
from diffnb.scores import make_empirical_score


def test_vp_ve_time_roundtrip():
    alpha_bar = np.array([0.999, 0.5, 1e-3])
    t = schedules.vp_to_ve_time(alpha_bar)
    np.testing.assert_allclose(t, (1 - alpha_bar) / alpha_bar)
    np.testing.assert_allclose(schedules.ve_to_vp_alpha_bar(t), alpha_bar)


def test_state_roundtrip():
    x = np.random.default_rng(0).standard_normal((4, 3))
    t = 0.3
    x_vp = schedules.ve_to_vp_state(x, t)
    np.testing.assert_allclose(schedules.vp_to_ve_state(x_vp, 1 / (1 + t)), x)


def test_ve_noise_maps_to_vp_noise():
    # x_ve = x0 + sqrt(t) xi  <=>  sqrt(abar) x_ve = sqrt(abar) x0 + sqrt(1 - abar) xi
    t = 0.7
    abar = schedules.ve_to_vp_alpha_bar(t)
    assert np.isclose(abar * t, 1 - abar)


def test_ve_score_from_vp_matches_direct():
    data = np.random.default_rng(1).standard_normal((50, 4))
    ve = make_empirical_score(data)

    def vp(x, abar):
        root = abar.sqrt()[:, None]
        return ve(x / root, (1 - abar) / abar) / root

    x = torch.randn(6, 4, dtype=torch.float64)
    t = torch.linspace(0.01, 3, 6, dtype=torch.float64)
    torch.testing.assert_close(schedules.ve_score_from_vp(vp)(x, t), ve(x, t))


def test_linear_ddpm_schedule_matches_paper_numbers():
    sched = schedules.VPSchedule.linear(1000)
    # digest: step 15 has alpha_bar = 0.99602, sigma = 0.0631
    assert np.isclose(sched.alpha_bar[15], 0.99602, atol=5e-5)
    assert np.isclose(sched.sigma(15), 0.0631, atol=5e-4)
    assert sched.step_of_ve_time(sched.ve_time(15)) == 15


def test_cosine_schedule_is_monotone():
    sched = schedules.VPSchedule.cosine(200)
    t = sched.ve_time(np.arange(200))
    assert np.all(np.diff(t) > 0) and t[0] > 0


def test_ve_schedule():
    ve = schedules.VESchedule()
    assert np.isclose(ve.variance(0.0), 1e-4) and np.isclose(ve.variance(1.0), 2500)
    u = np.array([0.1, 0.5, 0.9])
    np.testing.assert_allclose(ve.time_of_variance(ve.variance(u)), u)


def test_bad_input():
    with pytest.raises(ValueError, match="sigma_min"):
        schedules.VESchedule(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="alpha_bar"):
        schedules.vp_to_ve_time(np.array([0.5, 0.0]))
    with pytest.raises(ValueError, match="beta"):
        schedules.VPSchedule.linear(10, beta_start=0.1, beta_end=0.01)
    with pytest.raises(ValueError, match="t must"):
        schedules.ve_to_vp_alpha_bar(-1.0)
