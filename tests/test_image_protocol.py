"""diffnb.image_protocol: the time of DDPM steps, image spectra three ways, dimensions, copies, the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffnb import image_protocol as ip
from diffnb import sampling, scores
from diffnb.data import LinearManifold


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFNB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DIFFNB_PROGRESS", "0")


def test_step_time():
    assert ip.step_time(15) == pytest.approx(3.9989e-3, rel=1e-3)
    np.testing.assert_allclose(ip.step_time([0, 999]), [1.0001e-4, 2.4777e4], rtol=1e-3)
    assert ip.step_time(15, "cosine") < ip.step_time(15)
    with pytest.raises(ValueError, match="step must be integer"):
        ip.step_time(1000)
    with pytest.raises(ValueError, match="schedule"):
        ip.step_time(15, "sigmoid")


def test_image_spectra_three_ways_agree_on_a_linear_score():
    man = LinearManifold(d=36, block_dims=(4, 6), scales=(1.0, 0.3), seed=0)
    fn = scores.make_linear_score(man.F)
    x = torch.from_numpy(man.sample(5, seed=1))
    exact = ip.image_spectra(fn, x, 0.05, batch_size=2)
    probe = ip.image_spectra(fn, x, 0.05, method="probe", batch_size=2)
    top = ip.image_spectra(fn, x, 0.05, method="lanczos", k=6, n_iter=36)
    assert exact.shape == (5, 36) and top.shape == (5, 6)
    np.testing.assert_allclose(probe, exact, atol=1e-10)
    np.testing.assert_allclose(top, exact[:, :6], atol=1e-8)
    theory = np.sort(0.05 / (np.linalg.eigvalsh(man.covariance) + 0.05))[::-1]
    np.testing.assert_allclose(exact[0], theory / theory[0], atol=1e-10)
    # the threshold rule counts the directions whose variance exceeds t
    variances = np.linalg.eigvalsh(man.covariance)
    assert ip.image_dimensions(exact).tolist() == [int(np.sum(variances > 0.05))] * 5


def test_image_spectra_bad_input():
    fn = scores.make_linear_score(np.eye(4)[:, :2])
    with pytest.raises(ValueError, match="method must be"):
        ip.image_spectra(fn, torch.zeros(2, 4, dtype=torch.float64), 0.1, method="svd")
    with pytest.raises(ValueError, match="flat tensor"):
        ip.image_spectra(fn, torch.zeros(2, 1, 2, 2), 0.1)
    with pytest.raises(ValueError, match="t must be"):
        ip.image_spectra(fn, torch.zeros(2, 4), -0.1)
    with pytest.raises(ValueError, match="rule must be"):
        ip.image_dimensions(np.ones((2, 4)), "gap")


def test_copy_ratio():
    train = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    ratio = ip.copy_ratio(torch.tensor([[0.0, 0.1], [0.5, 0.5], [3.0, 1.0]]), train)
    np.testing.assert_allclose(ratio, [0.1, 0.5**0.5, 2.0])
    with pytest.raises(ValueError, match="at least two"):
        ip.copy_ratio(train, train[:1])


def test_copy_fraction():
    assert ip.COPY_THRESHOLD == pytest.approx(1 / 3)
    # strictly below the threshold counts; the default threshold is COPY_THRESHOLD
    assert ip.copy_fraction([0.1, 1 / 3, 0.5, 2.0]) == 0.25
    assert ip.copy_fraction(np.array([[0.2, 0.9]]), threshold=1.0) == 1.0
    assert ip.copy_fraction(torch.tensor([0.5, 2.0])) == 0.0
    # it agrees with copy_ratio's output: one copy among three samples
    train = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    ratio = ip.copy_ratio(torch.tensor([[0.0, 0.1], [0.5, 0.5], [3.0, 1.0]]), train)
    assert ip.copy_fraction(ratio) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("ratios", "threshold", "match"),
    [
        ([], 1 / 3, "at least one"),
        ([0.1, float("nan")], 1 / 3, "NaN"),
        ([-0.1, 0.5], 1 / 3, "non-negative"),
        ([0.1], 0.0, "threshold must be"),
        ([0.1], float("inf"), "threshold must be"),
        (["a"], 1 / 3, "array of numbers"),
    ],
)
def test_copy_fraction_bad_input(ratios, threshold, match):
    with pytest.raises(ValueError, match=match):
        ip.copy_fraction(ratios, threshold)


def test_paper_job_settings():
    job = ip.paper_job("cifar10", 5000)
    assert job["steps"] == 400_000 and job["lr"] == 1e-4 and job["batch_size"] == 128
    assert job["step"] == 15 and job["k_mult"] == 4 and job["channels"] == 128
    assert ip.paper_job("mnist", 100, steps=10)["steps"] == 10
    with pytest.raises(ValueError, match="unknown job keys"):
        ip.paper_job("mnist", 100, epochs=3)
    with pytest.raises(ValueError, match="name must be one of"):
        ip.paper_job("svhn", 100)


def test_job_network_is_what_the_job_trains():
    from diffnb.nets import build_model

    unet, shape = ip.job_network(ip.paper_job("mnist", 100))
    assert shape == (1, 28, 28) and round(build_model(unet).num_parameters() / 1e6, 1) == 6.0
    mlp, shape = ip.job_network(ip.paper_job("digits", 100, model="mlp", size=None))
    assert shape == (1, 8, 8) and mlp.d == 64
    with pytest.raises(ValueError, match="job\\['model'\\]"):
        ip.job_network({**ip.paper_job("digits", 100), "model": "cnn"})


def test_copy_ratio_is_distance_over_spacing():
    train = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    samples = torch.tensor([[0.1, 0.0], [0.0, 2.0]])
    distances, spacing = ip.training_distances(samples, train)
    np.testing.assert_allclose(distances, [0.1, 1.0])
    assert spacing == 1.0  # leave-one-out distances 1, 1, 3
    np.testing.assert_allclose(ip.copy_ratio(samples, train), distances / spacing)


def test_paper_job_ema_warms_up():
    # the paper's 0.9999 without a warm-up would leave a 2000-step trial run at 82% untrained weights
    assert ip.paper_job("mnist", 100)["ema_warmup"] is True


def test_image_jobs_fit_a_cpu_below_paper_scale():
    for scale, steps in (("quick", 2_000), ("full", 8_000)):
        jobs = ip.image_jobs(scale)
        assert {job["dataset"] for job in jobs} == {"digits"}
        assert all(job["model"] == "mlp" and job["steps"] == steps for job in jobs)
    paper = ip.image_jobs("paper")
    assert {job["dataset"] for job in paper} == {"mnist"}
    assert all(job["model"] == "unet" and job["steps"] == 400_000 for job in paper)
    with pytest.raises(ValueError, match="DIFFNB_SCALE|scale"):
        ip.image_jobs("huge")


def test_generate_is_seeded():
    fn = scores.make_linear_score(np.eye(4)[:, :2])
    a = ip.generate(lambda x, t: fn(x.double(), t.double()).float(), 3, 4, n_steps=20, seed=1)
    b = ip.generate(lambda x, t: fn(x.double(), t.double()).float(), 3, 4, n_steps=20, seed=1)
    torch.testing.assert_close(a, b)
    assert a.shape == (3, 4) and a[:, 2:].abs().max() < 0.05  # samples land on the 2-d subspace


def test_generate_without_denoising_returns_the_reverse_sde_states():
    fn = scores.make_linear_score(np.eye(4)[:, :2])
    calls = []

    def score(x, t):
        calls.append(float(t[0]))
        return fn(x.double(), t.double()).float()

    raw = ip.generate(score, 3, 4, n_steps=20, t_max=50.0, t_min=1e-3, seed=2, denoise=False)
    assert len(calls) == 20 and min(calls) > 1e-3  # no evaluation at t_min: the SDE only
    # a hand call of the sampler on the same grid, start and seed
    gen = torch.Generator().manual_seed(2)
    x0 = torch.randn(3, 4, generator=gen) * 50.0**0.5
    grid = sampling.noise_grid(50.0, 1e-3, 20)
    hand = sampling.sample(score, x0, grid, generator=gen, progress=False).samples
    torch.testing.assert_close(raw, hand, rtol=0, atol=0)
    # the default denoises exactly those states by one Tweedie step at t_min
    denoised = ip.generate(score, 3, 4, n_steps=20, t_max=50.0, t_min=1e-3, seed=2)
    assert calls[-1] == pytest.approx(1e-3)
    tweedie = raw + 1e-3 * score(raw, torch.full((3,), 1e-3))
    torch.testing.assert_close(denoised, tweedie, rtol=0, atol=0)
    # the noise of variance t_min left in the normal directions is removed by the step
    assert raw[:, 2:].abs().max() > 3 * denoised[:, 2:].abs().max()
    with pytest.raises(ValueError, match="denoise must be True or False"):
        ip.generate(score, 3, 4, n_steps=20, denoise="no")


def test_command_runs_and_resumes_from_the_cache(capsys):
    argv = ["--dataset", "digits", "--sizes", "20,40", "--model", "mlp", "--steps", "30", "--n-eval", "4",
            "--n-samples", "4", "--spectrum", "autograd"]  # fmt: skip
    assert ip.main(argv) == 0
    first = capsys.readouterr().out
    lines = [json.loads(line) for line in first.splitlines() if line.startswith('{"dataset"')]
    assert [line["n_train"] for line in lines] == [20, 40]
    assert all(0 <= line["dim_threshold_mean"] <= 64 for line in lines)
    assert ip.main(argv) == 0  # everything comes from the cache now
    again = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"dataset"')]
    assert [line["dim_threshold_mean"] for line in again] == [line["dim_threshold_mean"] for line in lines]


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--dataset", "digits", "--sizes", "1,x"], "comma-separated integers"),
        (["--dataset", "digits", "--sizes", "1"], "integers >= 2"),
        (["--dataset", "imagenet", "--sizes", "10"], "invalid choice"),
    ],
)
def test_command_bad_arguments(argv, match, capsys):
    with pytest.raises(SystemExit):
        ip.main(argv)
    assert match in capsys.readouterr().err
