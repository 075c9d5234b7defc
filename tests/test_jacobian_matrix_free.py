"""Matrix-free spectra: JVP/VJP, Lanczos bidiagonalisation and the image probe, against full Jacobians at small d."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from diffnb import scores
from diffnb.data import LinearManifold
from diffnb.jacobian import (
    jacobian_singular_values,
    jacobian_vector_product,
    lanczos_singular_values,
    probe_directions,
    probe_spectrum,
    score_jacobian,
    vector_jacobian_product,
)

D = 16


@pytest.fixture(scope="module")
def nonlinear():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(D, D, generator=gen, dtype=torch.float64)
    B = torch.randn(D, D, generator=gen, dtype=torch.float64) / D**0.5

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ A.T) @ B.T - x / t[:, None]

    x = torch.randn(3, D, generator=gen, dtype=torch.float64)
    return fn, x


class _TinyConv(nn.Module):
    """A conv net with GroupNorm on 1x4x4 images, wrapped as a flat score (rows independent)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.SiLU(), nn.Conv2d(8, 1, 3, padding=1)
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.net(x.reshape(-1, 1, 4, 4)).reshape(x.shape[0], -1)
        return (out - x) / t[:, None]


def test_jvp_and_vjp_match_the_full_jacobian(nonlinear):
    fn, x = nonlinear
    t = torch.tensor([0.3, 0.5, 1.0], dtype=torch.float64)
    J = score_jacobian(fn, x, t)
    v = torch.randn(3, D, dtype=torch.float64)
    V = torch.randn(3, 5, D, dtype=torch.float64)
    torch.testing.assert_close(jacobian_vector_product(fn, x, t, v), torch.einsum("nab,nb->na", J, v))
    torch.testing.assert_close(vector_jacobian_product(fn, x, t, v), torch.einsum("nab,na->nb", J, v))
    torch.testing.assert_close(jacobian_vector_product(fn, x, t, V, batch_size=4), torch.einsum("nab,nkb->nka", J, V))
    torch.testing.assert_close(vector_jacobian_product(fn, x, t, V, batch_size=7), torch.einsum("nab,nka->nkb", J, V))
    torch.testing.assert_close(jacobian_vector_product(fn, x[0], 0.3, v[0]), J[0] @ v[0])


def test_products_through_a_conv_net_with_groupnorm():
    torch.manual_seed(0)
    net = _TinyConv().double()
    x = torch.randn(4, D, dtype=torch.float64)
    J = score_jacobian(net, x, 0.2)
    v = torch.randn(4, D, dtype=torch.float64)
    torch.testing.assert_close(jacobian_vector_product(net, x, 0.2, v), torch.einsum("nab,nb->na", J, v))
    torch.testing.assert_close(vector_jacobian_product(net, x, 0.2, v), torch.einsum("nab,na->nb", J, v))
    full = lanczos_singular_values(net, x, 0.2, k=D, n_iter=D)
    torch.testing.assert_close(full.values, torch.linalg.svdvals(J), rtol=1e-9, atol=1e-9)


def test_lanczos_with_d_steps_is_the_whole_spectrum(nonlinear):
    fn, x = nonlinear
    sv = torch.linalg.svdvals(score_jacobian(fn, x, 0.5))
    res = lanczos_singular_values(fn, x, 0.5, k=D, n_iter=D)
    assert res.values.shape == (3, D) and res.n_iter == D
    torch.testing.assert_close(res.values, sv, rtol=1e-10, atol=1e-10)


def _spread_score(d: int, top: int, bottom: int, bulk: tuple[float, float] = (10.0, 5.0)):
    """A linear score with ``top`` large and ``bottom`` small singular values well apart from a middle bulk."""
    gen = torch.Generator().manual_seed(1)
    Q1, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    Q2, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    s = torch.cat(
        [
            torch.linspace(100.0, 60.0, top, dtype=torch.float64),
            torch.linspace(*bulk, d - top - bottom, dtype=torch.float64),
            torch.linspace(0.5, 0.1, bottom, dtype=torch.float64),
        ]
    )
    J = Q1 @ torch.diag(s) @ Q2.T

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x @ J.T

    return fn, s


@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_lanczos_finds_extreme_values_in_few_steps(which):
    # the small values converge at a rate set by their distance to the bulk relative to the largest values:
    # a bulk near the small end (as for tangent directions at small noise) needs more steps
    d = 200
    fn, s = _spread_score(d, top=5, bottom=5, bulk=(10.0, 5.0) if which == "largest" else (2.0, 1.0))
    x = torch.zeros(2, d, dtype=torch.float64)
    res = lanczos_singular_values(fn, x, 1.0, k=5, which=which, n_iter=40 if which == "largest" else 60)
    expected = s[:5] if which == "largest" else s[-5:]
    torch.testing.assert_close(res.values, expected.expand(2, 5), rtol=1e-8, atol=1e-8)
    assert torch.all(res.residuals < 1e-6)


def test_lanczos_residuals_flag_unconverged_values():
    d = 120
    fn, s = _spread_score(d, top=3, bottom=3)
    res = lanczos_singular_values(fn, torch.zeros(d, dtype=torch.float64), 1.0, k=20, n_iter=25)
    # each Ritz value lies within its residual of some singular value (a theorem for Golub-Kahan) ...
    error = (res.values[:, None] - s[None, :]).abs().min(dim=1).values
    assert torch.all(error <= res.residuals + 1e-9)
    # ... and the bulk values that have not converged carry large residuals
    assert res.residuals[-1] > 1e-3


def test_lanczos_survives_rank_deficiency():
    d = 12
    gen = torch.Generator().manual_seed(2)
    F = torch.randn(d, 3, generator=gen, dtype=torch.float64)
    P = F @ torch.linalg.pinv(F)  # projector of rank 3

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x @ P.T

    res = lanczos_singular_values(fn, torch.zeros(2, d, dtype=torch.float64), 1.0, k=d, n_iter=d)
    expected = torch.cat([torch.ones(3), torch.zeros(d - 3)]).to(torch.float64)
    torch.testing.assert_close(res.values, expected.expand(2, d), atol=1e-10, rtol=0)


def test_lanczos_in_float32_agrees_with_float64_vectors():
    torch.manual_seed(0)
    net = _TinyConv()
    x = torch.randn(2, D)
    sv = torch.linalg.svdvals(score_jacobian(net, x, 0.1))
    res = lanczos_singular_values(net, x, 0.1, k=4, n_iter=D, dtype=torch.float64)
    torch.testing.assert_close(res.values.float(), sv[:, :4], rtol=1e-4, atol=1e-4)


def test_probe_is_exact_for_a_linear_score_with_orthogonal_directions():
    man = LinearManifold(d=D, block_dims=(3, 4), scales=(1.0, 0.3), seed=0)
    fn = scores.make_linear_score(man.F)
    x = torch.from_numpy(man.sample(2, seed=1))
    t = 0.05
    exact = jacobian_singular_values(fn, x, t)
    for k_mult in (1, 4):
        probe = probe_spectrum(fn, x, t, k_mult=k_mult, seed=3)
        torch.testing.assert_close(probe, exact, rtol=1e-10, atol=1e-10)
    one_sided = probe_spectrum(fn, x, t, symmetric=False)
    assert one_sided.shape == (2, D - 1) and torch.all(one_sided <= 1 + 1e-12)


def test_image_noises_converge_to_the_exact_spectrum_as_k_grows():
    man = LinearManifold(d=D, block_dims=(3, 4), scales=(1.0, 0.3), seed=0)
    fn = scores.make_linear_score(man.F)
    x = torch.from_numpy(man.sample(1, seed=1))
    exact = jacobian_singular_values(fn, x, 0.05)
    for noise in ("channel_orthogonal", "gaussian"):
        errors = [
            (probe_spectrum(fn, x, 0.05, k_mult=k, noise=noise, image_shape=(1, 4, 4), seed=0) - exact).abs().max()
            for k in (1, 16, 256)
        ]
        # the spread shrinks like sqrt(d / K), K = k_mult d
        assert errors[0] > errors[1] > errors[2] and errors[2] < 0.1, (noise, errors)


def test_probe_directions_shapes_and_norms():
    gen = torch.Generator().manual_seed(0)
    N = probe_directions(12, 30, generator=gen)
    assert N.shape == (30, 12)
    torch.testing.assert_close(N.norm(dim=1), torch.ones(30, dtype=N.dtype))
    N = probe_directions(12, 24, generator=gen)
    torch.testing.assert_close(N.T @ N, 2 * torch.eye(12, dtype=N.dtype))
    N = probe_directions(3 * 4 * 4, 10, "channel_orthogonal", image_shape=(3, 4, 4), generator=gen)
    torch.testing.assert_close(N.norm(dim=1), torch.full((10,), 12**0.5, dtype=N.dtype))
    planes = N.reshape(10, 3, 4, 4)
    torch.testing.assert_close(planes @ planes.transpose(-1, -2), torch.eye(4, dtype=N.dtype).expand(10, 3, 4, 4))


def test_bad_input(nonlinear):
    fn, x = nonlinear
    with pytest.raises(ValueError, match="v must have shape"):
        jacobian_vector_product(fn, x, 0.5, torch.zeros(3, D + 1, dtype=x.dtype))
    with pytest.raises(TypeError, match="torch.Tensor"):
        vector_jacobian_product(fn, x.numpy(), 0.5, x)
    with pytest.raises(ValueError, match="t must be"):
        jacobian_vector_product(fn, x, -1.0, x)
    with pytest.raises(ValueError, match="k must be an integer"):
        lanczos_singular_values(fn, x, 0.5, k=0)
    with pytest.raises(ValueError, match="n_iter must be"):
        lanczos_singular_values(fn, x, 0.5, k=5, n_iter=3)
    with pytest.raises(ValueError, match="which must be"):
        lanczos_singular_values(fn, x, 0.5, which="middle")
    with pytest.raises(ValueError, match="noise must be one of"):
        probe_spectrum(fn, x, 0.5, noise="uniform")
    with pytest.raises(ValueError, match="image_shape must be given"):
        probe_spectrum(fn, x, 0.5, noise="channel_orthogonal")
    with pytest.raises(ValueError, match="image_shape must be"):
        probe_spectrum(fn, x, 0.5, noise="channel_orthogonal", image_shape=(1, 2, 8))
    with pytest.raises(ValueError, match="k_mult"):
        probe_spectrum(fn, x, 0.5, k_mult=0)
    with pytest.raises(ValueError, match="x must have shape"):
        probe_spectrum(fn, torch.zeros(2, 2, D, dtype=x.dtype), 0.5)
    assert np.isfinite(probe_spectrum(fn, x[0], 0.5).numpy()).all()
