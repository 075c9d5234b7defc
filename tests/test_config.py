import numpy as np
import pytest
import torch

from diffnb import config


def test_default_scale_is_quick(monkeypatch):
    monkeypatch.delenv("DIFFNB_SCALE", raising=False)
    assert config.get_scale() == "quick"


@pytest.mark.parametrize("name", config.SCALES)
def test_known_scales(monkeypatch, name):
    monkeypatch.setenv("DIFFNB_SCALE", name)
    assert config.get_scale() == name


def test_unknown_scale_lists_valid_names(monkeypatch):
    monkeypatch.setenv("DIFFNB_SCALE", "bogus")
    with pytest.raises(config.ScaleError, match="quick, full, paper"):
        config.get_scale()


def test_pick_follows_scale(monkeypatch):
    monkeypatch.setenv("DIFFNB_SCALE", "full")
    assert config.pick(quick=1, full=2, paper=3) == 2
    assert config.pick(quick=1, full=2) == 2
    assert config.pick(quick=1, full=2, paper=3, scale="paper") == 3


def test_seed_everything_reproduces():
    rng = config.seed_everything(3)
    a, ta = rng.standard_normal(3), torch.randn(3)
    rng = config.seed_everything(3)
    np.testing.assert_array_equal(a, rng.standard_normal(3))
    assert torch.equal(ta, torch.randn(3))


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_seed_rejects_bad_values(seed):
    with pytest.raises(ValueError, match="seed"):
        config.seed_everything(seed)


def test_device_is_cpu_without_cuda(monkeypatch):
    monkeypatch.delenv("DIFFNB_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert config.get_device().type == expected
    assert config.get_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="prefer"):
        config.get_device("tpu")


def test_set_threads_limits_torch_and_blas():
    from threadpoolctl import threadpool_info, threadpool_limits

    before = torch.get_num_threads()
    blas_before = threadpool_info()
    try:
        assert config.set_threads(1) == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
        with pytest.raises(ValueError, match="threads"):
            config.set_threads(0)
    finally:
        torch.set_num_threads(before)
        for pool in blas_before:
            if pool["user_api"] == "blas":
                threadpool_limits({pool["prefix"]: pool["num_threads"]})


def test_describe_names_versions():
    line = config.describe()
    assert "diffnb" in line and "torch" in line and "scale=" in line


def test_describe_warns_about_paper_scale_on_cpu(monkeypatch):
    monkeypatch.setattr(config, "get_device", lambda prefer=None: torch.device("cpu"))
    monkeypatch.setenv("DIFFNB_SCALE", "paper")
    assert config.PAPER_ON_CPU_NOTE in config.describe()
    monkeypatch.setenv("DIFFNB_SCALE", "full")
    assert config.PAPER_ON_CPU_NOTE not in config.describe()
    monkeypatch.setattr(config, "get_device", lambda prefer=None: torch.device("cuda"))
    monkeypatch.setenv("DIFFNB_SCALE", "paper")
    assert config.PAPER_ON_CPU_NOTE not in config.describe()


@pytest.mark.parametrize("n, inside", [(1, 1), (None, 2)])
def test_torch_threads_sets_and_restores_even_after_an_error(n, inside):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="inside"), config.torch_threads(n):
            assert torch.get_num_threads() == inside
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
