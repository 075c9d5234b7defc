r"""Jacobians of any score function, three ways.

``score_fn(x, t)`` takes a batch of points ``x`` of shape ``(n, d)`` and noise variances ``t`` of shape
``(n,)`` and returns scores of shape ``(n, d)``. :func:`score_jacobian` returns :math:`J(x, t)` for every
point, shape ``(n, d, d)``:

* ``"autograd"`` — exact, by reverse-mode differentiation (:func:`torch.func.jacrev`) vectorised over the
  points with :func:`torch.func.vmap`, in chunks;
* ``"central"`` — central differences with a small step along orthonormal directions (a check on
  autograd, and the only way for a score that is not differentiable in torch);
* ``"probe"`` — the papers' estimator: scores at the point moved by the noise scale :math:`\sqrt t` along
  ``d`` orthonormal directions (Algorithms 1 and 2 of the spectral-gaps paper). ``symmetric=True`` is the
  central-difference version, ``symmetric=False`` the one-sided "score matrix", whose largest singular
  value carries the score itself and is dropped by :func:`probe_singular_values`.

Because the directions are orthonormal, the singular values of the returned matrix are those of the
matrix of probed scores, which is what the papers decompose.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import jacfwd, jacrev, vmap

from diffnb._validation import check_finite, check_times

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
METHODS = ("autograd", "central", "probe")


def random_orthogonal(d: int, *, generator: torch.Generator | None = None, dtype=torch.float64, device=None):
    """A Haar-distributed random orthogonal ``d x d`` matrix (QR of a Gaussian matrix with signs fixed)."""
    G = torch.randn(d, d, generator=generator, dtype=dtype, device=device)
    Q, R = torch.linalg.qr(G)
    return Q * torch.sign(torch.diagonal(R))[None, :]


def _directions(d: int, directions, like: torch.Tensor, seed: int | None) -> torch.Tensor:
    if directions is None or (isinstance(directions, str) and directions == "identity"):
        return torch.eye(d, dtype=like.dtype, device=like.device)
    if isinstance(directions, str) and directions == "random":
        gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
        return random_orthogonal(d, generator=gen, dtype=like.dtype).to(like.device)
    if isinstance(directions, torch.Tensor):
        if directions.shape != (d, d):
            raise ValueError(
                f"directions must be a ({d}, {d}) orthogonal matrix, got {tuple(directions.shape)}"
            )
        return directions.to(dtype=like.dtype, device=like.device)
    raise ValueError(f"directions must be 'identity', 'random' or a (d, d) tensor, got {directions!r}")


def _autograd(
    score_fn: ScoreFn,
    X: torch.Tensor,
    times: torch.Tensor,
    *,
    batch_size: int = 64,
    chunk_size: int | None = None,
    mode: str = "rev",
) -> torch.Tensor:
    if mode not in ("rev", "fwd"):
        raise ValueError(f"mode must be 'rev' or 'fwd', got {mode!r}")

    def single(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return score_fn(x[None], t[None])[0]

    jac = jacrev(single, argnums=0, chunk_size=chunk_size) if mode == "rev" else jacfwd(single, argnums=0)
    batched = vmap(jac)
    out = [
        batched(X[i : i + batch_size], times[i : i + batch_size]) for i in range(0, X.shape[0], batch_size)
    ]
    return torch.cat(out)


def _probe_rows(
    score_fn: ScoreFn,
    X: torch.Tensor,
    times: torch.Tensor,
    Q: torch.Tensor,
    h: torch.Tensor,
    symmetric: bool,
    batch_size: int,
) -> torch.Tensor:
    """For each point, the matrix whose k-th column estimates J q_k; shape (n, d, d)."""
    n, d = X.shape
    out = torch.empty(n, d, d, dtype=X.dtype, device=X.device)
    per_call = max(1, batch_size // (2 * d if symmetric else d))
    with torch.no_grad():
        for start in range(0, n, per_call):
            xs, ts, hs = (
                X[start : start + per_call],
                times[start : start + per_call],
                h[start : start + per_call],
            )
            k = xs.shape[0]
            step = hs[:, None, None] * Q.T[None]  # (k, d directions, d features)
            plus = (xs[:, None, :] + step).reshape(-1, d)
            t_rep = ts.repeat_interleave(d)
            s_plus = score_fn(plus, t_rep).reshape(k, d, d)
            if symmetric:
                minus = (xs[:, None, :] - step).reshape(-1, d)
                rows = (s_plus - score_fn(minus, t_rep).reshape(k, d, d)) / (2 * hs[:, None, None])
            else:
                rows = s_plus / hs[:, None, None]
            out[start : start + k] = rows.transpose(1, 2)
    return out


def score_jacobian(
    score_fn: ScoreFn,
    x: torch.Tensor,
    t: float | torch.Tensor,
    method: str = "autograd",
    **options,
) -> torch.Tensor:
    """Jacobian of ``score_fn`` with respect to ``x`` at every point.

    Parameters
    ----------
    score_fn
        ``score_fn(x, t)`` with ``x`` of shape ``(n, d)`` and ``t`` of shape ``(n,)``; returns ``(n, d)``.
    x
        Points, shape ``(n, d)`` (or ``(d,)`` for one point; the result then has shape ``(d, d)``).
    t
        VE noise variance: a positive scalar or one per point.
    method
        ``"autograd"``, ``"central"`` or ``"probe"`` (see the module documentation).
    **options
        ``autograd``: ``batch_size`` (points per vmap call, 64), ``chunk_size`` (basis vectors per jacrev
        call, all at once by default), ``mode`` (``"rev"`` or ``"fwd"``).
        ``central``: ``rel_step`` (step over ``sqrt(t)``, 1e-4 in float64 and 1e-2 in float32),
        ``directions`` (``"identity"``, ``"random"`` or a ``(d, d)`` orthogonal tensor), ``seed``,
        ``batch_size`` (score evaluations per call, 4096).
        ``probe``: ``symmetric`` (True), ``scale`` (step over ``sqrt(t)``, 1), ``directions`` (``"random"``),
        ``seed``, ``batch_size``.

    Returns
    -------
    torch.Tensor
        Shape ``(n, d, d)``, ``J[i, a, b] = d s_a / d x_b`` at point ``i``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (n, d), got {type(x).__name__}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    single = x.ndim == 1
    X = x[None] if single else x
    if X.ndim != 2:
        raise ValueError(f"x must have shape (d,) or (n, d), got {tuple(x.shape)}")
    check_finite(X, "x")
    times = check_times(t, X.shape[0], like=X)
    d = X.shape[1]
    if method == "autograd":
        allowed = {"batch_size", "chunk_size", "mode"}
    elif method == "central":
        allowed = {"rel_step", "directions", "seed", "batch_size"}
    else:
        allowed = {"symmetric", "scale", "directions", "seed", "batch_size"}
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(
            f"unknown options for method={method!r}: {sorted(unknown)}; allowed: {sorted(allowed)}"
        )

    if method == "autograd":
        J = _autograd(score_fn, X, times, **options)
    else:
        default_dirs = "identity" if method == "central" else "random"
        Q = _directions(d, options.get("directions", default_dirs), X, options.get("seed"))
        if method == "central":
            default_rel = 1e-4 if X.dtype == torch.float64 else 1e-2
            h = options.get("rel_step", default_rel) * times.sqrt()
            symmetric = True
        else:
            h = options.get("scale", 1.0) * times.sqrt()
            symmetric = options.get("symmetric", True)
        M = _probe_rows(score_fn, X, times, Q, h, symmetric, options.get("batch_size", 4096))
        J = M @ Q.T  # columns J q_k, rotated back to the standard basis
    return J[0] if single else J


def probe_singular_values(
    score_fn: ScoreFn,
    x: torch.Tensor,
    t: float | torch.Tensor,
    *,
    symmetric: bool = True,
    drop_first: bool | None = None,
    normalize: bool = True,
    **options,
) -> torch.Tensor:
    """Singular values of the papers' probe matrix, in descending order.

    Parameters
    ----------
    score_fn, x, t
        As in :func:`score_jacobian`.
    symmetric
        Central differences (Algorithm 2, unbiased for linear scores) or one-sided probes (Algorithm 1).
    drop_first
        Drop the largest singular value; by default only for the one-sided probe, where it carries the
        score at ``x`` itself rather than the Jacobian.
    normalize
        Divide by the largest value kept (normal directions near 1).
    **options
        ``scale``, ``directions``, ``seed``, ``batch_size`` as for ``method="probe"``.
    """
    J = score_jacobian(score_fn, x, t, method="probe", symmetric=symmetric, **options)
    sv = torch.linalg.svdvals(J)
    if drop_first if drop_first is not None else not symmetric:
        sv = sv[..., 1:]
    if normalize:
        sv = sv / sv[..., :1]
    return sv
