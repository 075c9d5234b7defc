"""diffnb.nets.UNet: shapes from 8x8 to 32x32, time conditioning, VP input, Jacobians, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from diffnb.jacobian import jacobian_vector_product, score_jacobian
from diffnb.nets import UNet, UNetConfig, build_model
from diffnb.schedules import VPSchedule

TINY = {"channels": 8, "emb_dim": 16, "groups": 4}


@pytest.mark.parametrize(
    ("shape", "mults", "attention"),
    [
        ((1, 8, 8), (1, 2), (4,)),
        ((1, 28, 28), (1, 2, 2), (7,)),
        ((1, 32, 32), (1, 2, 2, 2), (16,)),
        ((3, 32, 32), (1, 2), ()),
        ((3, 16, 16), (1, 1, 2), (8,)),
    ],
)
def test_shapes_from_8_to_32(shape, mults, attention):
    config = UNetConfig(shape, channel_mults=mults, attention_resolutions=attention, mid_attention=True, **TINY)
    net = build_model(config, seed=0)
    assert isinstance(net, UNet) and net.d == config.d == math.prod(shape)
    x = torch.randn(3, config.d)
    sigma = torch.tensor([0.01, 1.0, 100.0])
    assert net(x, sigma).shape == (3, config.d)
    assert net.score(x, 0.25).shape == (3, config.d)
    assert net(x, torch.tensor(0.5)).shape == (3, config.d)  # a scalar noise level is broadcast


def test_time_conditioning_changes_the_output_and_steps_match_the_schedule():
    torch.manual_seed(0)
    net = UNet(UNetConfig((1, 8, 8), **TINY))
    with torch.no_grad():  # make the output depend on the embedding strongly enough to see
        for p in net.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(4, 64)
    a = net(x, torch.full((4,), 0.05))
    b = net(x, torch.full((4,), 5.0))
    assert (a - b).abs().max() > 1e-3
    # the "step" input is the DDPM step whose noise level is sigma (linear schedule, T = 1000)
    sched = VPSchedule.linear(1000)
    steps = torch.tensor([0, 15, 500, 999])
    sigma = torch.from_numpy(sched.ve_time(steps.numpy())).float().sqrt()
    torch.testing.assert_close(net._noise_features(sigma), steps.float(), atol=1e-3, rtol=1e-4)
    log_net = UNet(UNetConfig((1, 8, 8), noise_input="log_sigma", **TINY))
    torch.testing.assert_close(log_net._noise_features(sigma), 10 * sigma.log())


def test_rows_are_independent_and_input_is_the_vp_state():
    torch.manual_seed(1)
    net = UNet(UNetConfig((1, 8, 8), attention_resolutions=(4,), **TINY)).eval()
    x = torch.randn(5, 64)
    sigma = torch.full((5,), 0.3)
    full = net(x, sigma)
    for i in range(5):  # GroupNorm and attention act per sample
        torch.testing.assert_close(net(x[i : i + 1], sigma[i : i + 1]), full[i : i + 1], atol=1e-5, rtol=1e-5)
    # the first convolution sees the DDPM input sqrt(abar) x0 + sqrt(1 - abar) eps of the VE state x0 + sigma eps
    seen = []
    net.conv_in.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    x0, eps = torch.randn(2, 64), torch.randn(2, 64)
    sigma = torch.tensor([0.5, 3.0])
    abar = 1 / (1 + sigma**2)
    net(x0 + sigma[:, None] * eps, sigma)
    expected = abar.sqrt()[:, None] * x0 + (1 - abar).sqrt()[:, None] * eps
    torch.testing.assert_close(seen[-1], expected.reshape(2, 1, 8, 8))


def test_jacobians_of_the_unet():
    torch.manual_seed(2)
    net = UNet(UNetConfig((1, 8, 8), attention_resolutions=(4,), mid_attention=True, **TINY)).double().eval()
    x = torch.randn(2, 64, dtype=torch.float64)
    J = score_jacobian(net.score, x, 0.1)
    central = score_jacobian(net.score, x, 0.1, method="central")
    torch.testing.assert_close(J, central, atol=1e-6, rtol=1e-5)
    v = torch.randn(2, 64, dtype=torch.float64)
    torch.testing.assert_close(jacobian_vector_product(net.score, x, 0.1, v), torch.einsum("nab,nb->na", J, v))


def test_paper_configuration():
    config = UNetConfig.ddpm((3, 32, 32))
    assert config.channels == 128 and config.channel_mults == (1, 2, 2, 2) and config.num_res_blocks == 2
    assert config.attention_resolutions == (16,) and config.mid_attention and config.noise_input == "step"
    assert UNetConfig.ddpm((1, 28, 28), channels=64).channel_mults == (1, 2, 2)
    assert UNetConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_shape": (1, 30, 30), "channel_mults": (1, 2, 2)}, "image size 30x30 is not supported"),
        ({"image_shape": (1, 8, 8), "channel_mults": (1, 2, 2, 2)}, "image size 8x8 is not supported"),
        ({"image_shape": (1, 128, 128)}, "image size 128x128 is not supported"),
        ({"image_shape": (1, 8, 16)}, "image size 8x16 is not supported"),
        ({"image_shape": (8, 8)}, "image_shape must be"),
        ({"image_shape": (1, 8, 8), "channels": 6, "groups": 4}, "groups=4 must divide"),
        ({"image_shape": (1, 8, 8), "noise_input": "time"}, "noise_input"),
        ({"image_shape": (1, 8, 8), "emb_dim": 15}, "emb_dim"),
        ({"image_shape": (1, 8, 8), "dropout": 1.0}, "dropout"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig(**kwargs)


def test_bad_time():
    net = UNet(UNetConfig((1, 8, 8), **TINY))
    with pytest.raises(ValueError, match="t must be"):
        net.score(torch.zeros(1, 64), -1.0)
    with pytest.raises(TypeError, match="UNetConfig"):
        UNet({"image_shape": (1, 8, 8)})


def test_ddpm_configuration_follows_the_training_schedule():
    assert UNetConfig.ddpm((1, 8, 8), channels=32).schedule == "linear"
    assert UNetConfig.ddpm((1, 8, 8), channels=32, schedule="cosine").schedule == "cosine"
