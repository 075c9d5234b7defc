r"""Jacobians of any score function, three ways.

``score_fn(x, t)`` takes a batch of points ``x`` of shape ``(n, d)`` and noise variances ``t`` of shape
``(n,)`` and returns scores of shape ``(n, d)``, each row depending on its own point only (as every score
does: a network in ``eval()`` mode, without batch statistics or dropout). :func:`score_jacobian` returns
:math:`J(x, t)` for every point, shape ``(n, d, d)``:

* ``"autograd"`` — exact: one reverse-mode pass (:func:`torch.func.vjp`) through a batch of points, then
  the ``d`` basis cotangents pulled back together with :func:`torch.func.vmap` (``mode="fwd"``: tangents
  pushed forward with :func:`torch.func.jvp`), in chunks of points; because rows do not interact, the
  pullback of a basis vector through the whole batch gives that row of every point's Jacobian
  (``batch_size=1`` gives per-point Jacobians even for a score that breaks the rule);
* ``"central"`` — central differences with a small step along orthonormal directions (a check on
  autograd, and the only way for a score that is not differentiable in torch);
* ``"probe"`` — the papers' estimator: scores at the point moved by the noise scale :math:`\sqrt t` along
  ``d`` orthonormal directions (Algorithms 1 and 2 of the spectral-gaps paper). ``symmetric=True`` is the
  central-difference version, ``symmetric=False`` the one-sided "score matrix", whose largest singular
  value carries the score itself and is dropped by :func:`probe_singular_values`.

Because the directions are orthonormal, the singular values of the returned matrix are those of the
matrix of probed scores, which is what the papers decompose.

Precision on a GPU: every function here evaluates the score with cuDNN's convolutions in TF32 only when
matrix products are allowed TF32 too (``torch.backends.cuda.matmul.allow_tf32``, off by default). Torch's
own default turns TF32 on for convolutions alone, which moved the normalised spectra of a small U-Net by
7e-4 on an H200, against 6e-7 to 7e-7 in float32 (``benchmarks/device_check.py``, section 2).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import torch
from torch.func import jvp, vjp, vmap

from diffnb._linalg import gram_eigvalsh, svdvals
from diffnb._validation import (
    check_choice,
    check_finite,
    check_orthonormal_columns,
    check_positive_int,
    check_positive_number,
    check_times,
)

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
METHODS = ("autograd", "central", "probe")
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _matmul_allows_tf32() -> bool:
    """Whether float32 matrix products on CUDA may use TF32, under torch's older or newer setting."""
    try:
        return bool(torch.backends.cuda.matmul.allow_tf32)
    except RuntimeError:  # set through ``fp32_precision``: torch refuses to read the older flag then
        return getattr(torch.backends.cuda.matmul, "fp32_precision", "none") == "tf32"


def _convolutions_follow_matmul(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``fn`` with cuDNN's TF32 allowed only where matrix products allow it (see the module notes).

    The flag is global to the process: two threads computing spectra at once may see each other's setting.
    """

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        cudnn = torch.backends.cudnn
        previous = cudnn.allow_tf32
        cudnn.allow_tf32 = previous and _matmul_allows_tf32()
        try:
            return fn(*args, **kwargs)
        finally:
            cudnn.allow_tf32 = previous

    return wrapper


def random_orthogonal(
    d: int, n: int | None = None, *, generator: torch.Generator | None = None, dtype=torch.float64, device=None
):
    """A Haar-distributed random orthogonal ``d x d`` matrix, or ``n`` independent ones ``(n, d, d)``.

    QR of a Gaussian matrix with the signs of ``R``'s diagonal moved into ``Q``.
    """
    G = torch.randn(*(() if n is None else (n,)), d, d, generator=generator, dtype=dtype, device=device)
    Q, R = torch.linalg.qr(G)
    return Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1))[..., None, :]


def _directions(d: int, directions, like: torch.Tensor, seed: int | None) -> torch.Tensor:
    if directions is None or (isinstance(directions, str) and directions == "identity"):
        return torch.eye(d, dtype=like.dtype, device=like.device)
    if isinstance(directions, str) and directions == "random":
        gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
        return random_orthogonal(d, generator=gen, dtype=like.dtype).to(like.device)
    if isinstance(directions, torch.Tensor):
        if directions.shape != (d, d):
            raise ValueError(f"directions must be a ({d}, {d}) orthogonal matrix, got {tuple(directions.shape)}")
        Q = directions.to(dtype=like.dtype, device=like.device)
        # J = M Q^T below holds only for an orthogonal Q; the tolerance allows float32 rounding
        check_orthonormal_columns(Q, "directions", atol=1e-6 if Q.dtype == torch.float64 else 1e-4)
        return Q
    raise ValueError(f"directions must be 'identity', 'random' or a (d, d) tensor, got {directions!r}")


# Score rows pulled back together by ``method="autograd"`` (points per batch times ``d``) unless ``batch_size``
# is given. For chapter 5's network (d = 100, width 128, one thread) 800 Jacobians take 0.90 s with 6 400
# rows, 0.77 s with 12 800, 0.80 s with 25 600 and 1.9 s with 80 000 (too large for the caches).
_AUTOGRAD_ROWS = 12_800


def _autograd(
    score_fn: ScoreFn,
    X: torch.Tensor,
    times: torch.Tensor,
    *,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    mode: str = "rev",
) -> torch.Tensor:
    # A score acts row by row, so d s_n / d x_m = 0 for n != m: pulling the basis cotangent e_a back through
    # the whole batch at once gives row a of every point's Jacobian. In reverse mode one primal pass serves
    # every chunk of a batch, and the function need not be vmap-able point by point (data-dependent control
    # flow is fine).
    check_choice(mode, ("rev", "fwd"), "mode")
    n, d = X.shape
    if batch_size is None:
        batch_size = max(1, _AUTOGRAD_ROWS // d)
    check_positive_int(batch_size, "batch_size")
    if chunk_size is not None:
        check_positive_int(chunk_size, "chunk_size")
    basis = torch.eye(d, dtype=X.dtype, device=X.device)
    per_chunk = d if chunk_size is None else chunk_size
    out = torch.empty(n, d, d, dtype=X.dtype, device=X.device)
    # The function transforms differentiate under no_grad all the same; no_grad only stops ordinary autograd
    # from also recording every operation against the network's parameters (about 10% of the time).
    with torch.no_grad():
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            xs, ts = X[lo:hi], times[lo:hi]

            def batch_score(z: torch.Tensor, ts: torch.Tensor = ts) -> torch.Tensor:
                return score_fn(z, ts)

            if mode == "rev":
                pullback = vjp(batch_score, xs)[1]
            else:
                push = vmap(lambda v, xs=xs, f=batch_score: jvp(f, (xs,), (v,))[1])
            for a in range(0, d, per_chunk):
                directions = basis[a : a + per_chunk, None, :].expand(-1, hi - lo, d)
                if mode == "rev":  # rows a.. of every Jacobian, as (rows, points, d)
                    out[lo:hi, a : a + per_chunk, :] = vmap(pullback)(directions)[0].transpose(0, 1)
                else:  # columns a.. of every Jacobian, as (columns, points, d)
                    out[lo:hi, :, a : a + per_chunk] = push(directions).permute(1, 2, 0)
    return out


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


@_convolutions_follow_matmul
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
        ``autograd``: ``batch_size`` (points differentiated together; by default ``12800 // d``, at least
        1), ``chunk_size`` (basis vectors
        pulled back or pushed forward together, all ``d`` by default; fewer to save memory), ``mode``
        (``"rev"`` or ``"fwd"``).
        ``central``: ``rel_step`` (step over ``sqrt(t)``, 1e-4 in float64 and 1e-2 in float32),
        ``directions`` (``"identity"``, ``"random"`` or a ``(d, d)`` orthogonal tensor), ``seed``,
        ``batch_size`` (score evaluations per call, 4096).
        ``probe``: ``symmetric`` (True), ``scale`` (step over ``sqrt(t)``, 1), ``directions`` (``"random"``),
        ``seed``, ``batch_size``.

    Returns
    -------
    torch.Tensor
        Shape ``(n, d, d)``, ``J[i, a, b] = d s_a / d x_b`` at point ``i``; a plain tensor, not attached to
        an autograd graph (so not differentiable with respect to a network's parameters).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (n, d), got {type(x).__name__}")
    check_choice(method, METHODS, "method")
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
        raise TypeError(f"unknown options for method={method!r}: {sorted(unknown)}; allowed: {sorted(allowed)}")

    if method == "autograd":
        J = _autograd(score_fn, X, times, **options)
    else:
        default_dirs = "identity" if method == "central" else "random"
        Q = _directions(d, options.get("directions", default_dirs), X, options.get("seed"))
        if method == "central":
            rel_step = options.get("rel_step", 1e-4 if X.dtype == torch.float64 else 1e-2)
            check_positive_number(rel_step, "rel_step")
            h = rel_step * times.sqrt()
            symmetric = True
        else:
            scale = options.get("scale", 1.0)
            check_positive_number(scale, "scale")
            h = scale * times.sqrt()
            symmetric = options.get("symmetric", True)
        M = _probe_rows(score_fn, X, times, Q, h, symmetric, options.get("batch_size", 4096))
        J = M @ Q.T  # columns J q_k, rotated back to the standard basis
    return J[0] if single else J


def singular_values(M: torch.Tensor) -> torch.Tensor:
    """Singular values of a batch of matrices, in descending order.

    A float64 matrix goes to an SVD (LAPACK's, values only). A lower-precision one (a network's Jacobian in
    float32) is lifted to float64 and its Gram matrix (``M^T M`` or ``M M^T``, the smaller) diagonalised.
    The squaring costs float64 precision only: an absolute error of at most about ``1e-8`` of the largest
    value, reached by the very smallest values, where a float32 SVD is off by ``1e-7`` to a few ``1e-6`` of
    the largest value everywhere. On a CPU it is also faster: 0.36 s against 0.44-0.47 s for a float32 SVD of
    800 matrices of size 100 on one thread, and the batch is split across the threads that
    :func:`torch.get_num_threads` allows (0.24-0.26 s on two).

    Parameters
    ----------
    M
        Shape ``(..., m, n)``, finite.

    Returns
    -------
    torch.Tensor
        Shape ``(..., min(m, n))``, descending; float64 for a floating-point ``M`` of lower precision
        (the Gram route needs a float64 copy and a ``min(m, n)``-square Gram matrix: mind the memory for
        large batches of large matrices), else the dtype of ``M``.

    Raises
    ------
    ValueError
        If ``M`` has fewer than two dimensions or holds NaN or infinity.
    """
    if M.ndim < 2:
        raise ValueError(f"M must have at least 2 dimensions (..., m, n), got shape {tuple(M.shape)}")
    check_finite(M, "M")
    if M.dtype == torch.float64 or not M.is_floating_point():
        return svdvals(M)
    return gram_eigvalsh(M.to(torch.float64)).flip(-1).sqrt()


@_convolutions_follow_matmul
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
    sv = singular_values(J)
    if drop_first if drop_first is not None else not symmetric:
        sv = sv[..., 1:]
    if normalize:
        sv = sv / sv[..., :1]
    return sv


# ------------------------------------------------------------------------------------------------------------
# Matrix-free spectra: Jacobian-vector products, Lanczos bidiagonalisation, the papers' image probe
# ------------------------------------------------------------------------------------------------------------
#
# For an image model the d x d Jacobian is expensive to form (d up to 12288), but products with it are as
# cheap as a forward or a backward pass. ``score_fn`` is assumed to treat the rows of a batch independently
# (true of every network in the package: GroupNorm and LayerNorm act per sample), so one product on a batch of
# points gives every point its own product.


def _check_batch(x: torch.Tensor, name: str = "x") -> tuple[torch.Tensor, bool]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, d), got {type(x).__name__}")
    single = x.ndim == 1
    X = x[None] if single else x
    if X.ndim != 2:
        raise ValueError(f"{name} must have shape (d,) or (n, d), got {tuple(x.shape)}")
    check_finite(X, name)
    return X, single


def _expand_vectors(X: torch.Tensor, V: torch.Tensor, name: str) -> tuple[torch.Tensor, int | None]:
    """Vectors ``(n, d)`` or ``(n, k, d)``; returns them as ``(n * k, d)`` and ``k`` (None for one per point)."""
    n, d = X.shape
    if not isinstance(V, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, d) or (n, k, d), got {type(V).__name__}")
    if V.ndim == 2 and V.shape == (n, d):
        return V.to(X), None
    if V.ndim == 3 and V.shape[0] == n and V.shape[2] == d:
        return V.to(X).reshape(-1, d), V.shape[1]
    raise ValueError(
        f"{name} must have shape ({n}, {d}) or ({n}, k, {d}) for x of shape {tuple(X.shape)}, got {tuple(V.shape)}"
    )


def _jvp(fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.func.jvp(fn, (z,), (w,))[1]


def _vjp(fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.func.vjp(fn, z)[1](w)[0]


def _batched_products(
    score_fn: ScoreFn,
    x: torch.Tensor,
    t: float | torch.Tensor,
    vectors: torch.Tensor,
    name: str,
    batch_size: int,
    product: Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``product(score at t_i, x_i, w)`` for every point and every one of its vectors, in row batches."""
    X, single = _check_batch(x)
    times = check_times(t, X.shape[0], like=X)
    W, k = _expand_vectors(X, vectors[None] if single else vectors, name)
    Xr, Tr = (X, times) if k is None else (X.repeat_interleave(k, 0), times.repeat_interleave(k))
    out = []
    for start in range(0, Xr.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        ts = Tr[sl]
        out.append(product(lambda z, ts=ts: score_fn(z, ts), Xr[sl], W[sl]))
    result = torch.cat(out)
    result = result if k is None else result.reshape(X.shape[0], k, -1)
    return result[0] if single else result


@_convolutions_follow_matmul
def jacobian_vector_product(
    score_fn: ScoreFn, x: torch.Tensor, t: float | torch.Tensor, v: torch.Tensor, *, batch_size: int = 4096
) -> torch.Tensor:
    """``J(x_i, t_i) v_i`` at every point, by forward-mode differentiation (:func:`torch.func.jvp`).

    Parameters
    ----------
    score_fn
        ``score_fn(x, t)`` on a batch ``(n, d)`` with ``t`` of shape ``(n,)``; rows must not interact.
    x
        Points, shape ``(n, d)`` or ``(d,)``.
    t
        VE noise variance, a scalar or one per point.
    v
        Tangent vectors: ``(n, d)`` (one per point) or ``(n, k, d)`` (``k`` per point).
    batch_size
        Rows per call of ``score_fn`` when ``k`` vectors per point are expanded.

    Returns
    -------
    torch.Tensor
        Same shape as ``v``.
    """
    return _batched_products(score_fn, x, t, v, "v", batch_size, _jvp)


@_convolutions_follow_matmul
def vector_jacobian_product(
    score_fn: ScoreFn, x: torch.Tensor, t: float | torch.Tensor, u: torch.Tensor, *, batch_size: int = 4096
) -> torch.Tensor:
    """``J(x_i, t_i)^T u_i`` at every point, by reverse-mode differentiation (:func:`torch.func.vjp`).

    Arguments as in :func:`jacobian_vector_product`, with cotangents ``u`` in place of ``v``.
    """
    return _batched_products(score_fn, x, t, u, "u", batch_size, _vjp)


@dataclass
class LanczosResult:
    """Output of :func:`lanczos_singular_values`.

    Parameters
    ----------
    values
        Ritz approximations of singular values of ``J``, shape ``(n, k)``, descending within each row.
    residuals
        A posteriori bounds ``|J^T u - sigma v|`` for each value (small means converged), shape ``(n, k)``.
    n_iter
        Number of bidiagonalisation steps taken (each costs one JVP and one VJP on the batch).
    """

    values: torch.Tensor
    residuals: torch.Tensor
    n_iter: int


def _orthogonalize(w: torch.Tensor, basis: torch.Tensor, passes: int = 2) -> torch.Tensor:
    """Remove from ``w`` (n, d) its components along the orthonormal rows of ``basis`` (n, j, d), twice."""
    if basis.shape[1] == 0:
        return w
    for _ in range(passes):
        w = w - torch.einsum("njd,nj->nd", basis, torch.einsum("njd,nd->nj", basis, w))
    return w


def _normalize_or_restart(
    w: torch.Tensor, basis: torch.Tensor, scale: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Norms of ``w`` and the unit vectors; a breakdown (norm ~ 0) restarts with a random orthogonal vector."""
    norm = w.norm(dim=1)
    tiny = norm <= 1e3 * torch.finfo(w.dtype).eps * scale.clamp_min(torch.finfo(w.dtype).tiny)
    if bool(tiny.any()):
        fresh = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
        fresh = _orthogonalize(fresh, basis)
        w = torch.where(tiny[:, None], fresh, w)
        norm = torch.where(tiny, torch.zeros_like(norm), norm)
        unit = w / w.norm(dim=1, keepdim=True)
    else:
        unit = w / norm[:, None]
    return norm, unit


@_convolutions_follow_matmul
def lanczos_singular_values(
    score_fn: ScoreFn,
    x: torch.Tensor,
    t: float | torch.Tensor,
    k: int = 10,
    *,
    which: str = "largest",
    n_iter: int | None = None,
    seed: int = 0,
    dtype: torch.dtype | None = None,
) -> LanczosResult:
    r"""Extreme singular values of the score Jacobian without forming it (Golub–Kahan–Lanczos).

    The bidiagonalisation :math:`J V_m = U_m B_m` builds orthonormal bases of the Krylov spaces of
    :math:`J^\top J` and :math:`JJ^\top` from one JVP and one VJP per step; the singular values of the small
    bidiagonal :math:`B_m` approximate those of :math:`J`, the extreme ones first. This is Lanczos on
    :math:`J^\top J` carried out on :math:`J` itself (better conditioned than squaring it). Both bases are
    fully re-orthogonalised, so the values are reliable; each has an a-posteriori residual bound. With
    ``n_iter = d`` the whole spectrum is exact up to rounding.

    Parameters
    ----------
    score_fn, x, t
        As in :func:`score_jacobian`; ``x`` of shape ``(n, d)`` — all points are run together, one product
        per step for the whole batch.
    k
        Number of singular values returned per point.
    which
        ``"largest"`` (the normal directions at small noise) or ``"smallest"`` (the tangent directions;
        converge more slowly, raise ``n_iter``).
    n_iter
        Bidiagonalisation steps ``m`` (``k <= m <= d``); default ``min(d, 2 k + 30)``.
    seed
        Seed of the random start vector.
    dtype
        Precision of the Lanczos vectors (default: that of ``x``).

    Returns
    -------
    LanczosResult
        ``values`` and ``residuals`` of shape ``(n, k)`` (``(k,)`` for one point), descending.

    Raises
    ------
    ValueError
        If ``k`` or ``n_iter`` is out of range, or ``which`` is unknown.
    """
    X, single = _check_batch(x)
    n, d = X.shape
    times = check_times(t, n, like=X)
    if which not in ("largest", "smallest"):
        raise ValueError(f"which must be 'largest' or 'smallest', got {which!r}")
    if not isinstance(k, int) or not 1 <= k <= d:
        raise ValueError(f"k must be an integer in [1, d={d}], got {k!r}")
    m = min(d, 2 * k + 30) if n_iter is None else n_iter
    if not isinstance(m, int) or not k <= m <= d:
        raise ValueError(f"n_iter must be an integer in [k={k}, d={d}], got {n_iter!r}")
    work = dtype or X.dtype
    gen = torch.Generator().manual_seed(int(seed))

    def F(z: torch.Tensor) -> torch.Tensor:
        return score_fn(z, times)

    _, pullback = torch.func.vjp(F, X)

    def matvec(v: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(F, (X,), (v.to(X.dtype),))[1].to(work)

    def rmatvec(u: torch.Tensor) -> torch.Tensor:
        return pullback(u.to(X.dtype))[0].to(work)

    V = torch.zeros(n, m + 1, d, dtype=work, device=X.device)
    U = torch.zeros(n, m, d, dtype=work, device=X.device)
    alphas = torch.zeros(n, m, dtype=work, device=X.device)
    betas = torch.zeros(n, m, dtype=work, device=X.device)
    start = torch.randn(n, d, generator=gen, dtype=work).to(X.device)
    V[:, 0] = start / start.norm(dim=1, keepdim=True)
    scale = torch.zeros(n, dtype=work, device=X.device)
    for j in range(m):
        p = matvec(V[:, j])
        if j > 0:
            p = p - betas[:, j - 1, None] * U[:, j - 1]
        p = _orthogonalize(p, U[:, :j])
        scale = torch.maximum(scale, p.norm(dim=1))
        alphas[:, j], U[:, j] = _normalize_or_restart(p, U[:, :j], scale, gen)
        w = rmatvec(U[:, j]) - alphas[:, j, None] * V[:, j]
        w = _orthogonalize(w, V[:, : j + 1])
        scale = torch.maximum(scale, w.norm(dim=1))
        if j + 1 < d:
            betas[:, j], V[:, j + 1] = _normalize_or_restart(w, V[:, : j + 1], scale, gen)
        else:
            betas[:, j] = w.norm(dim=1)
    B = torch.diag_embed(alphas) + torch.diag_embed(betas[:, :-1], offset=1)
    P, theta, _ = torch.linalg.svd(B)  # descending
    resid = betas[:, -1, None].abs() * P[:, -1, :].abs()  # |e_m^T p_i| * beta_m
    sl = slice(0, k) if which == "largest" else slice(m - k, m)
    values, residuals = theta[:, sl], resid[:, sl]
    if single:
        values, residuals = values[0], residuals[0]
    return LanczosResult(values=values, residuals=residuals, n_iter=m)


PROBE_NOISES = ("orthogonal", "channel_orthogonal", "gaussian")


def probe_directions(
    d: int,
    n_directions: int,
    noise: str = "orthogonal",
    *,
    image_shape: tuple[int, int, int] | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Perturbation directions of the papers' probe estimator, shape ``(n_directions, d)``.

    ``"orthogonal"``
        Rows of independent Haar orthogonal ``d x d`` matrices, ``ceil(n_directions / d)`` of them stacked:
        unit vectors, and with ``n_directions = k d`` the stack satisfies :math:`N^\\top N = k I` exactly.
    ``"channel_orthogonal"``
        The memorization paper's image code (digest §2.3): for every direction and channel an independent
        ``h x h`` orthogonal matrix reshaped to the image, so each row has norm :math:`\\sqrt{C h}`;
        :math:`N^\\top N` is ``n_directions / h`` times the identity only on average.
    ``"gaussian"``
        I.i.d. standard normal entries (norm about :math:`\\sqrt d`; the code's ``"original"`` mode).

    ``image_shape`` ``(C, H, W)`` with ``H == W`` and ``C * H * W == d`` is needed for
    ``"channel_orthogonal"``.
    """
    check_choice(noise, PROBE_NOISES, "noise")
    check_positive_int(n_directions, "n_directions")
    if noise == "gaussian":
        return torch.randn(n_directions, d, generator=generator, dtype=dtype)
    if noise == "orthogonal":
        blocks = -(-n_directions // d)
        return torch.cat([random_orthogonal(d, generator=generator, dtype=dtype) for _ in range(blocks)])[:n_directions]
    if image_shape is None or len(image_shape) != 3:
        raise ValueError("image_shape must be given as (C, H, W) for noise='channel_orthogonal'")
    C, H, W = (int(s) for s in image_shape)
    if H != W or C * H * W != d:
        raise ValueError(f"image_shape must be (C, H, H) with C*H*H = d = {d}, got {tuple(image_shape)}")
    return random_orthogonal(H, n_directions * C, generator=generator, dtype=dtype).reshape(n_directions, d)


@_convolutions_follow_matmul
def probe_spectrum(
    score_fn: ScoreFn,
    x: torch.Tensor,
    t: float | torch.Tensor,
    *,
    k_mult: int = 4,
    symmetric: bool = True,
    noise: str = "orthogonal",
    image_shape: tuple[int, int, int] | None = None,
    scale: float = 1.0,
    drop_first: bool | None = None,
    normalize: bool = True,
    seed: int = 0,
    batch_size: int = 4096,
) -> torch.Tensor:
    r"""Singular values of the papers' probe matrix for images, with ``K = k_mult * d`` perturbations.

    At each point, ``K`` perturbed copies :math:`x \pm h\,n_k` with :math:`h = \text{scale}\,\sqrt t` are
    scored and stacked into a ``K x d`` matrix, whose ``d`` singular values are returned:

    * ``symmetric=True`` — rows :math:`(s(x + h n_k) - s(x - h n_k)) / 2h \approx J n_k` (the code's
      ``"symmetrized"`` mode; the spectral-gaps paper's Algorithm 2);
    * ``symmetric=False`` — rows :math:`s(x + h n_k)/h` (the ``"non-symmetrized"`` default of the
      memorization paper's image code); the largest singular value carries the score at ``x`` and is
      dropped by default.

    For a linear score and ``noise="orthogonal"`` the symmetric probe is exact: the probe matrix is
    :math:`N J^\top` with :math:`N^\top N = k_{mult} I`, so its normalised singular values are those of
    ``J``. Other noises add a Marchenko–Pastur-like spread of ratio ``1 / k_mult``; a nonlinear score adds
    the curvature over the step ``h``.

    In VP coordinates the papers perturb :math:`\sqrt{\bar\alpha}\,x_0 \pm \sigma_t n`; in the book's VE
    coordinates that is :math:`x_0 \pm \sqrt t\,n` with :math:`t = (1-\bar\alpha)/\bar\alpha` (``scale=1``).

    Parameters
    ----------
    score_fn, x, t
        As in :func:`score_jacobian` (``x`` flat, ``(n, d)``).
    k_mult
        Perturbations per dimension (4 in the papers' image experiments).
    symmetric, noise, image_shape
        See above and :func:`probe_directions`.
    scale
        Step over :math:`\sqrt t`.
    drop_first
        Drop the largest value (default: only for the one-sided probe).
    normalize
        Divide by the largest value kept.
    seed
        Seed of the directions (new directions for every point).
    batch_size
        Rows per call of ``score_fn``.

    Returns
    -------
    torch.Tensor
        Shape ``(n, d)`` (or ``(n, d - 1)`` after dropping), descending.
    """
    X, single = _check_batch(x)
    n, d = X.shape
    times = check_times(t, n, like=X)
    check_positive_int(k_mult, "k_mult")
    check_positive_number(scale, "scale")
    K = k_mult * d
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    with torch.no_grad():
        for i in range(n):
            N = probe_directions(d, K, noise, image_shape=image_shape, generator=gen, dtype=X.dtype).to(X.device)
            h = scale * times[i].sqrt()
            rows = []
            for start in range(0, K, batch_size):
                Nb = N[start : start + batch_size]
                tb = times[i].expand(Nb.shape[0])
                plus = score_fn(X[i] + h * Nb, tb)
                rows.append((plus - score_fn(X[i] - h * Nb, tb)) / (2 * h) if symmetric else plus / h)
            out.append(singular_values(torch.cat(rows)))
    sv = torch.stack(out)
    if drop_first if drop_first is not None else not symmetric:
        sv = sv[:, 1:]
    if normalize:
        sv = sv / sv[:, :1]
    return sv[0] if single else sv


@_convolutions_follow_matmul
def jacobian_singular_values(
    score_fn: ScoreFn, x: torch.Tensor, t: float | torch.Tensor, *, normalize: bool = True, **options
) -> torch.Tensor:
    """Singular values of the exact (autograd) Jacobian at every point, descending, shape ``(n, d)``.

    ``normalize`` divides by the largest value (the book's convention for networks: normal directions near
    1). ``options`` go to :func:`score_jacobian` with ``method="autograd"``.
    """
    sv = singular_values(score_jacobian(score_fn, x, t, method="autograd", **options))
    return sv / sv[..., :1] if normalize else sv
