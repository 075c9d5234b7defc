import numpy as np
import pytest

from diffnb.data import AxisAlignedManifold, LinearManifold


def test_linear_manifold_shapes_and_seed():
    a = LinearManifold(d=50, block_dims=(5, 10), scales=(1.0, 0.3), seed=3)
    b = LinearManifold(d=50, block_dims=(5, 10), scales=(1.0, 0.3), seed=3)
    np.testing.assert_array_equal(a.F, b.F)
    assert a.F.shape == (50, 15) and a.m == 15
    np.testing.assert_allclose(a.alphas, [0.1, 0.2])
    np.testing.assert_allclose(a.sigma2s, [1.0, 0.09])
    x = a.sample(7, seed=0)
    assert x.shape == (7, 50) and x.dtype == np.float64
    np.testing.assert_array_equal(x, a.sample(7, seed=0))


def test_linear_manifold_lies_in_span_and_has_covariance():
    man = LinearManifold(d=30, block_dims=(4,), scales=(2.0,), seed=0)
    x = man.sample(20_000, seed=1)
    assert np.linalg.matrix_rank(x, tol=1e-8) == 4
    np.testing.assert_allclose(x.T @ x / len(x), man.covariance, atol=0.08)


def test_block_scales_set_column_norms():
    man = LinearManifold(d=2000, block_dims=(3, 3), scales=(1.0, 0.1), seed=0)
    col = np.linalg.norm(man.F, axis=0) ** 2
    np.testing.assert_allclose(col[:3], 1.0, rtol=0.1)
    np.testing.assert_allclose(col[3:], 0.01, rtol=0.1)


def test_axis_aligned_manifold():
    man = AxisAlignedManifold(30, (2, 5), (1.0, 0.3), normal_scale=0.01)
    x = man.sample(50_000, seed=0)
    np.testing.assert_allclose(x.std(axis=0), man.coordinate_scales, rtol=0.03)
    assert [s.stop - s.start for s in man.block_slices()] == [2, 5]


def test_axis_aligned_normalized_on_sphere():
    man = AxisAlignedManifold(30, (2, 5), (1.0, 0.3), normalized=True)
    x = man.sample(1000, seed=0)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0)
    # digest: after the projection the sigma=1 block has variance about 0.36-0.41
    assert 0.3 < x[:, :2].var(axis=0).mean() < 0.45


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d": 10, "block_dims": (5, 6), "scales": (1.0, 1.0)}, "exceeds"),
        ({"d": 10, "block_dims": (5,), "scales": (1.0, 1.0)}, "one entry per block"),
        ({"d": 10, "block_dims": (5,), "scales": (-1.0,)}, "positive"),
        ({"d": 10, "block_dims": (0,), "scales": (1.0,)}, "positive integers"),
        ({"d": 10, "block_dims": (), "scales": ()}, "at least one"),
    ],
)
def test_bad_blocks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LinearManifold(**kwargs)
    with pytest.raises(ValueError, match=match):
        AxisAlignedManifold(**kwargs)


def test_bad_sample_size():
    with pytest.raises(ValueError, match="n must"):
        LinearManifold(d=5, block_dims=(2,), scales=(1.0,)).sample(0)
