"""diffnb.nets: shapes, the score convention, the official configuration, Jacobians through score_jacobian."""

from __future__ import annotations

import pytest
import torch

from diffnb.jacobian import score_jacobian
from diffnb.nets import NetConfig, ScoreMLP, build_model


@pytest.mark.parametrize("parametrization", ["eps", "x0", "edm"])
@pytest.mark.parametrize("conditioning", ["add", "film"])
def test_shapes_and_score_convention(parametrization, conditioning):
    net = build_model(NetConfig(d=7, width=16, depth=2, parametrization=parametrization, conditioning=conditioning), 0)
    x = torch.randn(5, 7)
    t = torch.tensor([0.01, 0.1, 1.0, 2.0, 5.0])
    eps = net(x, t.sqrt())
    assert eps.shape == (5, 7)
    torch.testing.assert_close(net.score(x, t), -eps / t.sqrt()[:, None])
    # scalar t broadcasts
    torch.testing.assert_close(net.score(x, 0.25), -net(x, torch.full((5,), 0.5)) / 0.5)
    torch.testing.assert_close(net.score(x, torch.tensor(0.25)), net.score(x, 0.25))


def test_official_tabular_matches_ddpm_tabular_layout():
    cfg = NetConfig.official_tabular(d=30)
    net = ScoreMLP(cfg)
    assert (cfg.width, cfg.depth, cfg.emb_dim, cfg.emb_hidden) == (128, 2, 128, 512)
    assert cfg.noise_input == "sigma" and cfg.parametrization == "eps" and not cfg.input_scaling
    # parameter count of DDPMTabular(input_size=30): time MLP 128->512->512, input 30->128,
    # two ResBlocks (LN, Linear 128x128, temb Linear 512->128, LN, Linear 128x128), output LN + Linear 128->30
    expected = (128 * 512 + 512) + (512 * 512 + 512) + (30 * 128 + 128)
    expected += 2 * (2 * 128 + (128 * 128 + 128) + (512 * 128 + 128) + 2 * 128 + (128 * 128 + 128))
    expected += 2 * 128 + (128 * 30 + 30)
    assert net.num_parameters() == expected
    # the official network embeds sigma itself, sinusoidally with frequencies exp(-log(1e4) i / 63)
    freqs = net.embedding.frequencies
    assert freqs.shape == (64,) and freqs[0] == 1.0
    torch.testing.assert_close(freqs[-1], torch.tensor(1e-4))


def test_seeded_build_is_reproducible_and_leaves_global_rng():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = build_model(NetConfig(d=5, width=8, depth=1), seed=3), build_model(NetConfig(d=5, width=8, depth=1), seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    c = build_model(NetConfig(d=5, width=8, depth=1), seed=4)
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))


def test_autograd_jacobian_of_network_matches_central_differences():
    net = build_model(NetConfig(d=6, width=16, depth=2), seed=1).double()
    x = torch.randn(4, 6, dtype=torch.float64)
    t = torch.tensor([0.01, 0.1, 1.0, 3.0], dtype=torch.float64)
    J = score_jacobian(net.score, x, t, method="autograd")
    Jc = score_jacobian(net.score, x, t, method="central")
    assert J.shape == (4, 6, 6)
    assert not J.requires_grad  # the parameters require grad; the Jacobian is a plain tensor
    torch.testing.assert_close(J, Jc, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(score_jacobian(net.score, x, t, mode="fwd"), J)


def test_config_round_trip_and_overrides():
    cfg = NetConfig(d=4, width=8)
    assert NetConfig.from_dict(cfg.to_dict()) == cfg
    assert ScoreMLP(4, width=8).config == cfg
    assert ScoreMLP(cfg, depth=5).config.depth == 5
    with pytest.raises(ValueError, match="unknown NetConfig fields"):
        NetConfig.from_dict({"d": 4, "colour": "red"})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"d": 0}, "d must be a positive integer"),
        ({"d": 3, "width": 2.5}, "width must be a positive integer"),
        ({"d": 3, "emb_dim": 7}, "emb_dim must be even"),
        ({"d": 3, "noise_input": "time"}, "noise_input must be one of"),
        ({"d": 3, "parametrization": "v"}, "parametrization must be one of"),
        ({"d": 3, "conditioning": "concat"}, "conditioning must be one of"),
        ({"d": 3, "sigma_data": 0.0}, "sigma_data must be positive"),
        ({"d": 3, "dropout": 1.0}, "dropout must lie in"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NetConfig(**kwargs)


def test_bad_time():
    net = ScoreMLP(NetConfig(d=3, width=8, depth=1))
    with pytest.raises(ValueError, match="positive finite noise variance"):
        net.score(torch.zeros(2, 3), 0.0)
    with pytest.raises(ValueError, match="positive finite noise variance"):
        net.score(torch.zeros(2, 3), float("nan"))


def test_score_runs_on_the_device_of_the_weights():
    # "meta" stands in for a GPU here: the network must see its inputs there, whatever device x is on
    model = ScoreMLP(NetConfig(d=5, width=16, depth=1)).to("meta")
    seen = []
    model.register_forward_pre_hook(lambda module, inputs: seen.append([z.device.type for z in inputs]))
    x = torch.randn(3, 5)
    with pytest.raises(NotImplementedError):  # a meta tensor cannot be copied back to the CPU
        model.score(x, torch.full((3,), 0.5, dtype=torch.float64))
    assert seen == [["meta", "meta"]]
    cpu = ScoreMLP(NetConfig(d=5, width=16, depth=1))
    out = cpu.score(x, torch.full((3,), 0.5))
    assert out.device == x.device and out.shape == (3, 5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_model_serves_cpu_points_and_their_jacobians():  # pragma: no cover - GPU machines only
    torch.manual_seed(0)
    model = ScoreMLP(NetConfig(d=5, width=16, depth=2)).eval()
    x = torch.randn(4, 5)
    reference = score_jacobian(model.score, x, 0.3, method="autograd")
    gpu = model.cuda()
    out = gpu.score(x, 0.3)
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, gpu.score(x.cuda(), 0.3).cpu())
    for mode in ("rev", "fwd"):
        jac = score_jacobian(gpu.score, x, 0.3, method="autograd", mode=mode)
        assert jac.device.type == "cpu"
        torch.testing.assert_close(jac, reference, rtol=1e-4, atol=1e-5)
