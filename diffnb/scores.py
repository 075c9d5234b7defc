r"""Exact scores and their Jacobians.

Two scores have closed forms and carry the book's exact computations:

* the **empirical score** of a finite data set :math:`\{y_\mu\}_{\mu=1}^P` (the optimal denoiser of the
  training set, and what a network that memorises converges to),

  .. math:: s(x, t) = \frac{\sum_\mu w_\mu y_\mu - x}{t}, \qquad
            w_\mu = \operatorname{softmax}_\mu\Big(-\frac{\lVert x - y_\mu\rVert^2}{2t}\Big),

  with Jacobian :math:`J = (-I + \mathrm{Cov}_w / t) / t` (second-order Tweedie);
* the **exact score of a Gaussian linear manifold** :math:`x = F z`, :math:`s(x, t) = -(FF^\top + tI)^{-1}x`.

``t`` is the VE noise variance throughout (notation appendix). Inputs may be NumPy arrays (computed in float64 and
returned as NumPy) or tensors (kept on their device and dtype).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from diffnb._linalg import eigvalsh, gram_eigvalsh, matmul
from diffnb._validation import (
    ArrayLike,
    as_tensor,
    check_finite,
    check_points,
    check_same_kind,
    check_score_call,
    check_times,
    to_output,
)
from diffnb.config import torch_threads

_MAX_PRODUCTS = 2**24  # largest (P x d(d+1)/2) table of products y_a y_b kept in memory (128 MB in float64)


@dataclass(frozen=True, eq=False)
class PreparedData:
    """A training set checked once, with the squared norms of its points, for repeated exact computations.

    Every function of this module that takes ``data`` also takes a :class:`PreparedData` (made by
    :func:`prepare_data`) and then skips the pass over the data that checks it and computes its squared
    norms: worth it when one training set meets many calls (noise levels, batches of points). The points
    are not copied (a float64 NumPy array is shared): do not change the array afterwards, or the stored
    norms go stale.

    Parameters
    ----------
    points
        The training points as a tensor, shape ``(P, d)``.
    squared_norms
        ``|y_mu|^2`` for every point, shape ``(P,)``, same dtype and device.
    """

    points: torch.Tensor
    squared_norms: torch.Tensor

    def __post_init__(self) -> None:
        Y, y_sq = self.points, self.squared_norms
        if not (isinstance(Y, torch.Tensor) and isinstance(y_sq, torch.Tensor)):
            raise TypeError("PreparedData holds tensors; make it with prepare_data(data)")
        if Y.ndim != 2 or y_sq.shape != (Y.shape[0],):
            raise ValueError(
                f"PreparedData needs points of shape (P, d) and squared_norms of shape (P,), got "
                f"{tuple(Y.shape)} and {tuple(y_sq.shape)}; make it with prepare_data(data)"
            )
        check_same_kind(Y, y_sq, "points", "squared_norms")

    @property
    def shape(self) -> tuple[int, int]:
        """``(P, d)``."""
        return tuple(self.points.shape)


def prepare_data(data: ArrayLike | PreparedData) -> PreparedData:
    """Check a training set once (shape ``(P, d)``, non-empty, finite) and keep its squared norms.

    NumPy data become a float64 tensor; a tensor keeps its dtype and device. A :class:`PreparedData` is
    returned as it is.
    """
    if isinstance(data, PreparedData):
        return data
    Y = as_tensor(data, "data")
    if Y.ndim != 2:
        raise ValueError(f"data must have shape (P, d), got {tuple(Y.shape)}")
    return PreparedData(Y, _finite_squared_norms(Y))


def _prepare(x: ArrayLike, data: ArrayLike | PreparedData, t: ArrayLike):
    as_numpy = not isinstance(x, torch.Tensor)
    prepared = prepare_data(data)
    Y, y_sq = prepared.points, prepared.squared_norms
    X = as_tensor(x, "x")
    if as_numpy and isinstance(data, (torch.Tensor, PreparedData)):
        X = X.to(dtype=Y.dtype, device=Y.device)
    check_same_kind(Y, X, "data", "x")
    X, single = check_points(X, Y.shape[1])
    times = check_times(t, X.shape[0], like=X)
    return X, Y, y_sq, times, single, as_numpy


def _squared_norms(Y: torch.Tensor) -> torch.Tensor:
    """Row-wise squared norms, without the (P, d) temporary of ``(Y * Y).sum(-1)`` (a vectorised reduction,
    about twice as fast as ``einsum`` at P = 10 000, d = 784)."""
    return torch.linalg.vector_norm(Y, dim=1).square()


def _finite_squared_norms(Y: torch.Tensor) -> torch.Tensor:
    """Squared norms of the data rows, which also checks the data: a NaN or an infinity makes its row's norm
    non-finite, so one pass over the data does both (the element-wise check runs only to explain a failure)."""
    if Y.numel() == 0:
        raise ValueError("data is empty; it needs at least one point")
    y_sq = _squared_norms(Y)
    if not bool(torch.isfinite(y_sq).all()):
        check_finite(Y, "data")
        raise ValueError("data has entries too large to square in its dtype (a squared norm overflows)")
    return y_sq


def _posterior_weights(X: torch.Tensor, Y: torch.Tensor, y_sq: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Posterior weights, shape (n, P): a stable softmax of -|x - y|^2 / (2t) over the rows of ``Y``, whose
    squared norms are ``y_sq``. In float32 and float64, unless autograd records, weights below ``2 P e``
    times the smallest normal number of the dtype are 0 (2.4e-303 in float64 for P = 20 000) and the others
    at least ``2 e`` times it, never subnormal; otherwise this is :func:`torch.softmax`.

    On that path the logits are computed into the result and every later step works in place:
    a fresh (n, P) temporary costs more in page faults than the arithmetic on it (a subtraction over
    1677 x 10 000 values takes 120 ms into a new tensor, 35 ms in place). Logits that would give the
    negligible weights are clamped before ``exp`` and their weights set to 0: where ``exp`` underflows it
    takes a slow path (small ``t`` puts most logits thousands below the largest; 40 ms against 6 ms for
    96 x 20 000 values), and the products that follow see no subnormal numbers. The product stays in torch
    with the element-wise work: handing over from NumPy's BLAS to torch on two threads left each library's
    idle threads spinning against the other's (3.3 ms against 1.3 ms for 16 points at d = 784, P = 1 000).
    """
    tracked = torch.is_grad_enabled() and any(T.requires_grad for T in (X, Y, y_sq, times))
    if tracked or X.dtype not in (torch.float32, torch.float64):  # half precision: too narrow for the cut
        return _traceable_weights(X, Y, y_sq, times)
    # x.y - |y|^2 / 2: |x|^2 is the same for every mu and cancels in the softmax
    return _softmax_rows_(torch.addmm(-0.5 * y_sq, X, Y.T), times[:, None])


def _traceable_weights(X: torch.Tensor, Y: torch.Tensor, y_sq: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """The posterior weights out of place, for autograd and torch.func transforms: :func:`torch.softmax`,
    with each row's largest logit subtracted before the division by ``t`` as in :func:`_softmax_rows_`."""
    logits = X @ Y.T - 0.5 * y_sq
    shifted = logits - logits.amax(dim=-1, keepdim=True).detach()  # the softmax does not see the shift
    return torch.softmax(shifted / times[..., None], dim=-1)


def _softmax_rows_(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """The softmax of every row of ``logits / temperature`` (``(n, P)`` and ``(n, 1)``), in place in ``logits``,
    as :func:`_posterior_weights` describes. Each row's largest logit is subtracted before the division, so
    that a tiny temperature gives -inf and 0 (weights 0 and 1) rather than an overflow to inf and a NaN."""
    floor = math.log(torch.finfo(logits.dtype).tiny) + 1.0 + math.log(logits.shape[-1])  # normalised: >= e tiny
    logits.sub_(logits.amax(dim=-1, keepdim=True)).div_(temperature).clamp_min_(floor).exp_()
    F.threshold_(logits, 2 * math.exp(floor), 0.0)  # the clamped ones (2x: a float32 exp may round up)
    return logits.div_(logits.sum(dim=-1, keepdim=True))


def _score_from_data(X: torch.Tensor, Y: torch.Tensor, y_sq: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """The empirical score with no checks, so that torch.func transforms can trace it."""
    return (_traceable_weights(X, Y, y_sq, times) @ Y - X) / times[..., None]


def make_empirical_score(data: ArrayLike | PreparedData) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The empirical score of ``data`` as a function ``score_fn(x, t)`` for :mod:`diffnb.jacobian`.

    The data are checked once (or not at all when they come as :class:`PreparedData`); the returned function
    works under :func:`torch.func.vmap` and :func:`torch.func.jacrev`. ``x`` has shape ``(n, d)`` and the
    dtype of the data (float64 for NumPy data); ``t`` has shape ``(n,)`` or is a scalar.
    """
    prepared = prepare_data(data)
    Y, y_sq = prepared.points, prepared.squared_norms

    def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        check_score_call(x, t, Y, "the data", Y.shape[1])
        t = torch.as_tensor(t, dtype=Y.dtype, device=Y.device)
        return _score_from_data(x, Y, y_sq, t if t.ndim else t.expand(x.shape[0]))

    return score_fn


def posterior_weights(x: ArrayLike, data: ArrayLike | PreparedData, t: ArrayLike) -> ArrayLike:
    """Posterior weights :math:`w_\\mu(x) = p(y_\\mu \\mid x_t = x)` of the training points.

    Parameters
    ----------
    x
        Points, shape ``(d,)`` or ``(n, d)``.
    data
        Training points, shape ``(P, d)``, or a :class:`PreparedData` (checked once, for many calls).
    t
        Noise variance, a positive scalar or one per point ``(n,)``.

    Returns
    -------
    Weights of shape ``(P,)`` or ``(n, P)``; each row sums to one. In float32 and float64, unless autograd
    records, weights below ``2 P e`` times the smallest normal number of the dtype (2.4e-303 in float64 for
    P = 20 000) are exactly 0, and no weight is subnormal.

    Notes
    -----
    The exponents are :math:`(x\\cdot y_\\mu - \\lVert y_\\mu\\rVert^2/2)/t`, one matrix product for all
    points, so they carry a rounding error of about ``eps * |x| |y| / t``, with ``eps`` the dtype's
    precision. In float64 that is negligible; in float32 it is not at small ``t`` for large data: at
    ``d = 3072`` with image-sized norms and ``t = 4e-3`` the smaller of two competing weights is off by about
    1%. Pass float64 (NumPy arrays are float64 by default) for exact work.
    """
    X, Y, y_sq, times, single, as_numpy = _prepare(x, data, t)
    w = _posterior_weights(X, Y, y_sq, times)
    return to_output(w[0] if single else w, as_numpy)


def participation_ratio(x: ArrayLike, data: ArrayLike | PreparedData, t: ArrayLike) -> ArrayLike:
    """Effective number of training points that the posterior puts weight on, :math:`1/\\sum_\\mu w_\\mu^2`.

    It runs from ``P`` (flat posterior, large noise) down to 1 (one point dominates, small noise).
    Parameters as in :func:`posterior_weights`; returns a scalar or shape ``(n,)``.
    """
    X, Y, y_sq, times, single, as_numpy = _prepare(x, data, t)
    pr = _participation(_posterior_weights(X, Y, y_sq, times))
    return to_output(pr[0] if single else pr, as_numpy)


def _participation(W: torch.Tensor) -> torch.Tensor:
    """The participation ratio 1 / sum_mu w_mu^2 of every row of the weights ``W`` (n, P), with no (n, P) temporary."""
    return torch.linalg.vector_norm(W, dim=-1).square().reciprocal()


def empirical_score(x: ArrayLike, data: ArrayLike | PreparedData, t: ArrayLike) -> ArrayLike:
    """Score of the data set smoothed by Gaussian noise of variance ``t``: ``(sum_mu w_mu y_mu - x) / t``.

    Parameters as in :func:`posterior_weights`. Returns the score with the shape of ``x``.
    """
    X, Y, y_sq, times, single, as_numpy = _prepare(x, data, t)
    w = _posterior_weights(X, Y, y_sq, times)
    s = (w @ Y - X) / times[:, None]  # in torch, like the weights: no hand-over between thread pools
    return to_output(s[0] if single else s, as_numpy)


def _map_active_rows(
    W: torch.Tensor, Y: torch.Tensor, weight_tol: float, fn: Callable[[torch.Tensor], torch.Tensor]
) -> list[torch.Tensor]:
    """``fn(A)`` for each row ``w`` of the weights ``W``, where ``A`` holds the rows sqrt(w_mu) (y_mu - ybar)
    of the points whose weight exceeds ``weight_tol``.

    Every ``A`` is written into one buffer shaped like ``Y`` (``fn`` must not keep it): reusing one block of
    memory costs 18 ms a point against 65 ms for a fresh one at P = 10 000, d = 784, where the page faults
    of a new block cost more than the arithmetic. The loop hands over between torch and NumPy's BLAS at
    every point, so torch runs on one thread (:func:`diffnb.config.torch_threads`).
    """
    buffer = torch.empty_like(Y)
    out = []
    with torch_threads(1):
        for w in W:
            wk, Yk = w, Y
            if weight_tol > 0:
                keep = w > weight_tol
                if not bool(keep.all()):  # a broad posterior keeps every point: no copy of the data then
                    wk, Yk = w[keep], Y[keep]
            wk = wk / wk.sum()
            ybar = matmul(wk[None], Yk)[0]
            out.append(fn(torch.sub(Yk, ybar, out=buffer[: Yk.shape[0]]).mul_(wk.sqrt()[:, None])))
    return out


def posterior_covariance(
    x: ArrayLike, data: ArrayLike | PreparedData, t: ArrayLike, weight_tol: float = 0.0
) -> ArrayLike:
    """Covariance of the training points under the posterior weights, :math:`\\mathrm{Cov}_w(x)`.

    Parameters
    ----------
    x, data, t
        As in :func:`posterior_weights`.
    weight_tol
        Points whose weight is at most this are left out (and the rest renormalised); 0 keeps all.

    Returns
    -------
    Shape ``(d, d)`` or ``(n, d, d)``.
    """
    X, Y, y_sq, times, single, as_numpy = _prepare(x, data, t)
    cov = _posterior_covariances(X, Y, y_sq, times, weight_tol)
    return to_output(cov[0] if single else cov, as_numpy)


def _posterior_covariances(
    X: torch.Tensor, Y: torch.Tensor, y_sq: torch.Tensor, times: torch.Tensor, weight_tol: float
) -> torch.Tensor:
    """:math:`\\mathrm{Cov}_w` at every point, ``(n, d, d)``, from checked inputs."""
    W = _posterior_weights(X, Y, y_sq, times)
    return torch.stack(_map_active_rows(W, Y, weight_tol, lambda A: matmul(A.T, A)))


def empirical_score_jacobian(
    x: ArrayLike, data: ArrayLike | PreparedData, t: ArrayLike, weight_tol: float = 0.0
) -> ArrayLike:
    """Closed-form Jacobian of the empirical score, :math:`J = (-I + \\mathrm{Cov}_w/t)/t`.

    Parameters as in :func:`posterior_covariance`. Returns ``(d, d)`` or ``(n, d, d)``; it is symmetric.
    """
    X, Y, y_sq, times, single, as_numpy = _prepare(x, data, t)
    cov = _posterior_covariances(X, Y, y_sq, times, weight_tol)  # checked once, above
    eye = torch.eye(Y.shape[1], dtype=X.dtype, device=X.device)
    J = (cov / times[:, None, None] - eye) / times[:, None, None]
    return to_output(J[0] if single else J, as_numpy)


def _product_table(Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Upper-triangle products ``y_a y_b`` of every data point, ``(P, d(d+1)/2)``, with their index pairs.

    ``None`` when the table would hold more than ``_MAX_PRODUCTS`` numbers.
    """
    rows, cols = torch.triu_indices(Y.shape[1], Y.shape[1], device=Y.device)
    if Y.shape[0] * rows.shape[0] > _MAX_PRODUCTS:
        return None
    return Y[:, rows] * Y[:, cols], rows, cols


def _weighted_covariance_eigvals(
    W: torch.Tensor,
    Y: torch.Tensor,
    *,
    weight_tol: float,
    table: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Eigenvalues of :math:`\\mathrm{Cov}_w` for every row ``w`` of the weights ``W`` (n, P), ascending, >= 0.

    Without ``table``, point by point: only the ``k`` training points whose weight exceeds ``weight_tol``
    enter :math:`\\mathrm{Cov}_w = A^\\top A` (``A`` the ``k x d`` weighted, centred points); its non-zero
    eigenvalues are those of the Gram matrix :math:`AA^\\top` when ``k < d`` (the other ``d - k`` are 0), and
    of :math:`A^\\top A` otherwise. With ``table`` (from :func:`_product_table`, built once for many calls), all
    rows at once: the second moments are one matrix product ``W @ table``, and ``Cov_w = M2 - m m^T`` (in
    float64 the cancellation costs about 1e-16 absolute); training points whose weight is at most
    ``weight_tol`` in every row are skipped. The table route is the faster one for small ``d`` and many rows;
    the point-by-point route for large ``d`` or concentrated posteriors.
    """
    n, d = W.shape[0], Y.shape[1]
    if table is not None:
        products, rows, cols = table
        keep = (W > weight_tol).any(dim=0)
        if int(keep.sum()) < Y.shape[0] // 2:  # small t: most training points carry no weight at all
            W, Y, products = W[:, keep], Y[keep], products[keep]
        m = W @ Y
        flat = W @ products
        M2 = torch.empty(n, d, d, dtype=W.dtype, device=W.device)
        M2[:, rows, cols] = flat
        M2[:, cols, rows] = flat
        return eigvalsh(M2 - m[:, :, None] * m[:, None, :]).clamp_min(0.0)
    out = torch.zeros(n, d, dtype=W.dtype, device=W.device)
    for i, lam in enumerate(_map_active_rows(W, Y, weight_tol, gram_eigvalsh)):
        out[i, d - lam.shape[0] :] = lam  # min(k, d) values; the other d - k are 0
    return out


def empirical_jacobian_eigvals(
    x: ArrayLike,
    data: ArrayLike | PreparedData,
    t: ArrayLike,
    *,
    normalized: bool = False,
    weight_tol: float = 1e-16,
) -> ArrayLike:
    """Eigenvalues of the empirical-score Jacobian, ascending, without forming ``d x d`` matrices when not needed.

    Only the ``k`` training points whose posterior weight exceeds ``weight_tol`` enter
    :math:`\\mathrm{Cov}_w = A^\\top A` (``A`` the ``k x d`` weighted, centred points). Its non-zero eigenvalues
    are those of the ``k x k`` Gram matrix :math:`AA^\\top` when ``k < d``, and of :math:`A^\\top A` otherwise;
    the other ``d - k`` eigenvalues of the Jacobian equal ``-1/t`` exactly.

    Parameters
    ----------
    x, data, t
        As in :func:`posterior_weights`.
    normalized
        Return the eigenvalues of ``t * J`` (in ``[-1, 0]`` when the posterior is narrower than the noise).
    weight_tol
        Weight below which a training point is left out. The error this makes is of the order of the
        dropped weight times the squared data diameter over ``t``; use 0 to keep every point.

    Returns
    -------
    Shape ``(d,)`` or ``(n, d)``, ascending along the last axis.
    """
    X, Y, y_sq, times, single, as_numpy = _prepare(x, data, t)
    if weight_tol < 0:
        raise ValueError(f"weight_tol must be non-negative, got {weight_tol}")
    W = _posterior_weights(X, Y, y_sq, times)
    out = _weighted_covariance_eigvals(W, Y, weight_tol=weight_tol) / times[:, None] - 1.0
    if not normalized:
        out = out / times[:, None]
    return to_output(out[0] if single else out, as_numpy)


def _linear_eigenbasis(F: ArrayLike) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The left singular vectors of ``F`` split into ``U`` (``d x min(d, m)``, with the eigenvalues ``s**2`` of
    ``FF^T`` along them) and an orthonormal basis ``N`` of the rest (``d x (d - min(d, m))``).

    The normal directions ``N`` get exactly ``1/t``, where an eigendecomposition of ``FF^T`` would give them
    eigenvalues of the order of the rounding error, which dominate ``t`` at small noise in float32. Each part
    is applied on its own: writing the inverse as ``I/t`` minus a correction would cancel two terms of size
    ``1/t`` along the tangent directions.
    """
    Ft = as_tensor(F, "F")
    if Ft.ndim != 2:
        raise ValueError(f"F must have shape (d, m), got {tuple(Ft.shape)}")
    check_finite(Ft, "F")
    U, s, _ = torch.linalg.svd(Ft, full_matrices=True)
    k = s.shape[0]
    return U[:, :k], s**2, U[:, k:]


def linear_score(x: ArrayLike, F: ArrayLike, t: ArrayLike) -> ArrayLike:
    """Exact score of the Gaussian linear manifold ``x = F z``, ``z ~ N(0, I)``: :math:`-(FF^\\top + tI)^{-1}x`.

    Parameters
    ----------
    x
        Points, shape ``(d,)`` or ``(n, d)``.
    F
        Embedding, shape ``(d, m)``.
    t
        Noise variance, a positive scalar or one per point.
    """
    as_numpy = not isinstance(x, torch.Tensor)
    U, lam, N = _linear_eigenbasis(F)
    X = as_tensor(x, "x")
    if not isinstance(x, torch.Tensor):
        X = X.to(dtype=U.dtype, device=U.device)
    check_same_kind(U, X, "F", "x")
    X, single = check_points(X, U.shape[0])
    times = check_times(t, X.shape[0], like=X)
    s = _linear_score_fn(U, lam, N)(X, times)
    return to_output(s[0] if single else s, as_numpy)


def make_linear_score(F: ArrayLike) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """:func:`linear_score` of a fixed ``F`` as a function ``score_fn(x, t)`` for :mod:`diffnb.jacobian`.

    ``F`` is checked and its singular vectors computed once, so each call costs two ``d x d`` products per
    point; the returned function works under :func:`torch.func.vmap` and :func:`torch.func.jacrev`.
    """
    return _linear_score_fn(*_linear_eigenbasis(F))


def _linear_score_fn(
    U: torch.Tensor, lam: torch.Tensor, N: torch.Tensor
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        check_score_call(x, t, U, "F", U.shape[0])
        t = torch.as_tensor(t, dtype=lam.dtype, device=lam.device)
        t = (t if t.ndim else t.expand(x.shape[0]))[..., None]
        # -(C + tI)^{-1} x, tangent and normal parts apart
        return -((x @ U) / (lam + t)) @ U.T - ((x @ N) / t) @ N.T

    return score_fn


def linear_score_jacobian(F: ArrayLike, t: float) -> ArrayLike:
    """Jacobian of :func:`linear_score`, :math:`-(FF^\\top + tI)^{-1}`, the same at every point.

    Its eigenvalues are :math:`-1/(\\lambda_i + t)` with :math:`\\lambda_i` the eigenvalues of :math:`FF^\\top`.
    """
    as_numpy = not isinstance(F, torch.Tensor)
    U, lam, N = _linear_eigenbasis(F)
    times = check_times(t, 1, like=U)
    t0 = times[0]
    J = -(U / (lam + t0)) @ U.T - (N / t0) @ N.T
    return to_output(0.5 * (J + J.T), as_numpy)
