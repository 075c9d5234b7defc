"""diffnb.training: loss decreases, EMA, seeding, ensemble == sequential, caching, checkpoints, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from diffnb import training
from diffnb.nets import NetConfig, build_model
from diffnb.training import TrainConfig, train_ensemble, train_score_model

NET = NetConfig(d=6, width=32, depth=1, emb_dim=16, emb_hidden=32)


def make_data(n, seed=0, d=6):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    F = np.random.default_rng(99).standard_normal((d, 2)) / np.sqrt(d)
    return z @ F.T


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFNB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DIFFNB_PROGRESS", "0")


def params_of(trained):
    return {k: v.clone() for k, v in trained.model.state_dict().items()}


def test_a_few_steps_reduce_the_loss():
    cfg = TrainConfig(steps=200, batch_size=64, lr=3e-3, sigma_min=0.05, sigma_max=2.0, warmup_steps=10)
    trained = train_score_model(make_data(500), NET, cfg, use_cache=False)
    assert trained.losses.shape == (200,)
    assert np.all(np.isfinite(trained.losses))
    assert trained.losses[-50:].mean() < 0.7 * trained.losses[:50].mean()
    held_out = training.loss_on(trained.model, make_data(200, seed=1), [0.1, 1.0])
    untrained = training.loss_on(build_model(NET, seed=0), make_data(200, seed=1), [0.1, 1.0])
    assert np.all(held_out < untrained)


def test_ema_weights():
    data = make_data(100)
    # decay 0: the EMA is the last iterate
    cfg = TrainConfig(steps=5, ema_decay=0.0, ema_warmup=False)
    trained = train_score_model(data, NET, cfg, use_cache=False)
    for k, v in trained.model.state_dict().items():
        torch.testing.assert_close(v.cpu(), trained.raw_state[k])  # the raw state is kept on the CPU
    # one step with decay 0.9: EMA = 0.9 * initial + 0.1 * updated
    cfg = TrainConfig(steps=1, ema_decay=0.9, ema_warmup=False, seed=7)
    trained = train_score_model(data, NET, cfg, use_cache=False)
    init = build_model(NET, seed=training._sub_seeds(7)[0]).state_dict()
    for k, v in trained.model.state_dict().items():
        torch.testing.assert_close(v.cpu(), 0.9 * init[k] + 0.1 * trained.raw_state[k])
    # the returned model is the EMA one, frozen and in evaluation mode
    assert not trained.model.training
    assert not any(p.requires_grad for p in trained.model.parameters())


def test_seeding_gives_identical_runs():
    data = make_data(200)
    cfg = TrainConfig(steps=40, seed=3)
    a = train_score_model(data, NET, cfg, use_cache=False)
    torch.manual_seed(999)  # the global generator must not matter
    b = train_score_model(data, NET, cfg, use_cache=False)
    c = train_score_model(data, NET, TrainConfig(steps=40, seed=4), use_cache=False)
    np.testing.assert_array_equal(a.losses, b.losses)
    for k, v in params_of(a).items():
        assert torch.equal(v, params_of(b)[k])
    assert not np.array_equal(a.losses, c.losses)


@pytest.mark.parametrize("optimizer, engine", [("adam", "stacked"), ("radam", "stacked"), ("adam", "vmap")])
def test_ensemble_equals_sequential(optimizer, engine):
    datasets = [make_data(n, seed=n) for n in (10, 57, 300)]
    cfg = TrainConfig(steps=120, batch_size=32, optimizer=optimizer, lr=2e-3, seed=11, loss_weighting="edm")
    ens = train_ensemble(datasets, NET, cfg, vectorize=True, use_cache=False, engine=engine)
    seq = train_ensemble(datasets, NET, cfg, vectorize=False, use_cache=False)
    alone = train_score_model(datasets[1], NET, TrainConfig(**{**cfg.to_dict(), "seed": 12}), use_cache=False)
    for e, s in zip(ens, seq, strict=True):
        assert e.n_train == s.n_train and e.train_config == s.train_config
        np.testing.assert_allclose(e.losses, s.losses, rtol=1e-4, atol=1e-6)
        for k, v in params_of(e).items():
            torch.testing.assert_close(v, params_of(s)[k], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(alone.losses, seq[1].losses, rtol=1e-6)
    # members differ from one another (own data, own seed)
    assert not np.allclose(ens[0].losses, ens[1].losses)


def test_cache_hit_and_members_shared_between_ensembles():
    datasets = [make_data(50, seed=1), make_data(80, seed=2)]
    cfg = TrainConfig(steps=30, seed=5)
    first = train_ensemble(datasets, NET, cfg)
    assert not any(m.from_cache for m in first)
    again = train_ensemble(datasets, NET, cfg)
    assert all(m.from_cache for m in again)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.losses, b.losses)
        for k, v in params_of(a).items():
            assert torch.equal(v, params_of(b)[k])
    # the second member alone, with its own seed, is the same entry
    alone = train_score_model(datasets[1], NET, TrainConfig(**{**cfg.to_dict(), "seed": 6}))
    assert alone.from_cache
    # a different configuration is a miss
    assert not train_score_model(datasets[1], NET, TrainConfig(steps=31, seed=6)).from_cache


def test_checkpoint_resume_reproduces_uninterrupted_run(monkeypatch):
    data = make_data(100)
    cfg = TrainConfig(steps=300, seed=2)
    reference = train_score_model(data, NET, cfg, use_cache=False)

    real_draw, calls = training._draw, {"n": 0}

    def failing_draw(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        return real_draw(*args, **kwargs)

    monkeypatch.setattr(training, "_draw", failing_draw)
    with pytest.raises(KeyboardInterrupt):
        train_score_model(data, NET, cfg, checkpoint_every=100)
    monkeypatch.setattr(training, "_draw", real_draw)
    resumed = train_score_model(data, NET, cfg, checkpoint_every=100)
    np.testing.assert_allclose(resumed.losses, reference.losses, rtol=1e-6)
    for k, v in params_of(resumed).items():
        torch.testing.assert_close(v, params_of(reference)[k])


def test_threads_are_restored_and_progress_bar_runs(capsys):
    before = torch.get_num_threads()
    train_score_model(make_data(20), NET, TrainConfig(steps=5), use_cache=False, progress=True, threads=1)
    assert torch.get_num_threads() == before
    assert "step" in capsys.readouterr().err


@pytest.mark.parametrize(
    "env, scale, expected",
    [("", "quick", False), ("", "full", True), ("", "paper", True), ("1", "quick", True), ("off", "full", False)],
)
def test_progress_default_follows_the_environment_then_the_scale(monkeypatch, env, scale, expected):
    monkeypatch.setenv("DIFFNB_PROGRESS", env)
    monkeypatch.setenv("DIFFNB_SCALE", scale)
    assert training._progress_enabled(None) is expected
    assert training._progress_enabled(True) is True  # an explicit choice wins
    assert training._progress_enabled(False) is False


def test_progress_default_rejects_an_unknown_word(monkeypatch):
    monkeypatch.setenv("DIFFNB_PROGRESS", "maybe")
    with pytest.raises(ValueError, match="DIFFNB_PROGRESS must be one of"):
        train_score_model(make_data(20), NET, TrainConfig(steps=1), use_cache=False)


@pytest.mark.parametrize(
    "data, match",
    [
        (np.zeros(6), "shape \\(P, d\\)"),
        (np.zeros((3, 6, 1)), "shape \\(P, d\\)"),
        (np.zeros((3, 5)), "5 features but the network expects d=6"),
        (np.zeros((0, 6)), "empty"),
        (np.array([[0.0] * 5 + [np.nan]] * 3), "NaN or infinite"),
        (np.array([[np.inf] * 6]), "NaN or infinite"),
    ],
)
def test_bad_data(data, match):
    with pytest.raises(ValueError, match=match):
        train_score_model(data, NET, TrainConfig(steps=1), use_cache=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sigma_min": 1.0, "sigma_max": 1.0}, "sigma_min must be smaller than sigma_max"),
        ({"sigma_min": 2.0, "sigma_max": 1.0}, "sigma_min must be smaller than sigma_max"),
        ({"sigma_min": -1.0}, "sigma_min must be positive"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"optimizer": "sgd"}, "optimizer must be one of"),
        ({"ema_decay": 1.0}, "ema_decay must lie in"),
        ({"lr_schedule": "step"}, "lr_schedule must be one of"),
        ({"loss_weighting": "snr"}, "loss_weighting must be one of"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_stacked_forward_matches_modules():
    from torch.func import stack_module_state

    from diffnb.nets import stacked_forward

    for cfg in (
        NET,
        NetConfig.official_tabular(6),
        NetConfig(d=6, width=8, depth=2, output_norm=False, parametrization="x0", conditioning="film"),
    ):
        members = [build_model(cfg, seed=k) for k in range(3)]
        params, _ = stack_module_state(members)
        x, sigma = torch.randn(3, 5, 6), torch.rand(3, 5) + 0.05
        expected = torch.stack([m(x[k], sigma[k]) for k, m in enumerate(members)])
        torch.testing.assert_close(stacked_forward(params, cfg, x, sigma), expected, rtol=1e-5, atol=1e-5)


def test_bad_ensemble_arguments():
    with pytest.raises(TypeError, match="list of"):
        train_ensemble(make_data(5), NET, TrainConfig(steps=1), use_cache=False)
    with pytest.raises(ValueError, match="seeds has 1 entries for 2 data sets"):
        train_ensemble([make_data(5), make_data(5)], NET, TrainConfig(steps=1), seeds=[0], use_cache=False)
    with pytest.raises(ValueError, match="datasets is empty"):
        train_ensemble([], NET, TrainConfig(steps=1), use_cache=False)
    with pytest.raises(ValueError, match="engine must be"):
        train_ensemble([make_data(5)], NET, TrainConfig(steps=1), use_cache=False, engine="jit")


def test_official_training_configuration():
    cfg = TrainConfig.official()
    assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.optimizer) == (2_000_000, 128, 1e-4, "radam")
    assert (cfg.sigma_min, cfg.sigma_max, cfg.ema_decay, cfg.seed) == (0.01, 50.0, 0.9999, 42)


def test_async_training_in_a_second_process_matches():
    from diffnb.training import train_ensemble_async

    datasets = [make_data(30, seed=1), make_data(40, seed=2)]
    cfg = TrainConfig(steps=20, batch_size=16, seed=4)
    future = train_ensemble_async(datasets, NET, cfg, use_cache=False)
    here = train_ensemble(datasets, NET, cfg, use_cache=False)
    there = future.result(timeout=300)
    for a, b in zip(here, there, strict=True):
        np.testing.assert_allclose(a.losses, b.losses, rtol=1e-5)
        assert isinstance(b.model, type(a.model))


@pytest.mark.skipif(sys.platform == "win32", reason="kills the parent with SIGKILL")
def test_async_worker_ends_with_its_parent(tmp_path):
    """A killed notebook kernel must not leave its background training running; the worker outlives the
    thread that started it, though."""
    parent = tmp_path / "parent.py"
    parent.write_text(
        textwrap.dedent(
            """
            import os, threading, time
            from diffnb.training import _worker_process

            if __name__ == "__main__":  # the spawned worker imports this file too
                box = {}

                def start():
                    box["pool"] = _worker_process()
                    box["pool"].submit(os.getpid).result()

                starter = threading.Thread(target=start)
                starter.start()
                starter.join()
                time.sleep(2)  # the thread that started the worker has ended
                pool = box["pool"]
                print(pool.submit(os.getpid).result(), flush=True)  # still serving
                pool.submit(time.sleep, 120)
                time.sleep(120)
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(parent)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(proc.stdout.readline())
        os.kill(worker, 0)  # alive while the parent lives
        proc.kill()  # SIGKILL: no clean-up code runs in the parent
        proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(worker, signal.SIGKILL)
            pytest.fail("the worker outlived its parent")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_record_rebuilds_the_same_network():
    trained = train_score_model(make_data(40), NET, TrainConfig(steps=3, batch_size=8), use_cache=False)
    record = trained.to_record()
    assert all(v.device.type == "cpu" for v in record["ema_state"].values())
    back = training.TrainedModel.from_record(record, "cpu")
    for k, v in trained.model.state_dict().items():
        torch.testing.assert_close(back.model.state_dict()[k], v.cpu())
    np.testing.assert_allclose(back.losses, trained.losses, rtol=1e-6)
    assert back.net_config == trained.net_config and back.train_config == trained.train_config
    assert back.from_cache and back.seconds == 0.0
    assert back.extra["trained_seconds"] == pytest.approx(trained.seconds)
    assert not back.model.training and not any(p.requires_grad for p in back.model.parameters())
    x = torch.randn(5, 6)
    torch.testing.assert_close(back.score(x, 0.3), trained.score(x, 0.3))
