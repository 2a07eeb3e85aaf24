"""Largest eigenvalue and spectral norm by power iteration."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._base import LinearOperator
from ._utils import check_device, check_dtype, check_generator

__all__ = ["PowerIterationResult", "lambda_max", "spectral_norm"]


@dataclass(frozen=True)
class PowerIterationResult:
    """Result of :func:`spectral_norm` and :func:`lambda_max`.

    Attributes
    ----------
    value : float
        The estimate.
    num_iters : int
        Operator applications used (pairs ``A``, ``A^H`` for the norm).
    error_estimate : float
        ``||B v - theta v||`` for the final unit vector ``v`` and Rayleigh
        quotient ``theta`` of the self-adjoint ``B`` iterated on (``A`` for
        :func:`lambda_max`, ``A^H A`` for :func:`spectral_norm`, converted to
        the norm's scale). For self-adjoint ``B`` some eigenvalue lies within
        this distance of ``theta``; it is the largest one unless the start
        vector is nearly orthogonal to its eigenvector (a random start makes
        that unlikely).
    converged : bool
        ``error_estimate <= tol * |value|``.
    """

    value: float
    num_iters: int
    error_estimate: float
    converged: bool


def _check(A, tol, max_iters, where, *, square=False, dtype=torch.float64, device=None,
           generator=None):
    """Shared argument checks of the spectral estimators; returns the device."""
    if not isinstance(A, LinearOperator):
        raise TypeError(f"{where}: expected a LinearOperator, got {type(A).__name__}")
    if square and A.in_shape != A.out_shape:
        raise ValueError(
            f"{where}: expected a square operator, got in_shape {A.in_shape} and "
            f"out_shape {A.out_shape}"
        )
    real = isinstance(tol, (int, float)) and not isinstance(tol, bool)
    if not (real and math.isfinite(tol) and tol > 0):
        raise ValueError(f"{where}: expected tol > 0, got {tol!r}")
    if not (isinstance(max_iters, int) and not isinstance(max_iters, bool) and max_iters >= 1):
        raise ValueError(f"{where}: expected max_iters >= 1, got {max_iters!r}")
    check_dtype(dtype, where, complex_ok=False)
    check_generator(generator, where)
    return check_device(device, where)


def _power(matvec, shape, *, tol, max_iters, dtype, device, generator, scale):
    if generator is None:
        generator = torch.Generator(device=device or "cpu").manual_seed(0)
    v = torch.randn(shape, dtype=dtype, device=device, generator=generator)
    v = v / torch.linalg.vector_norm(v)
    theta, residual = 0.0, math.inf
    for it in range(1, max_iters + 1):
        w = matvec(v)
        theta = torch.vdot(v.reshape(-1), w.reshape(-1)).real.item()
        residual = torch.linalg.vector_norm(w - theta * v).item()
        norm = torch.linalg.vector_norm(w)
        value, error = scale(theta, residual)
        if error <= tol * abs(value) or norm == 0:
            return PowerIterationResult(value, it, error, True)
        v = w / norm
    value, error = scale(theta, residual)
    return PowerIterationResult(value, max_iters, error, False)


def lambda_max(
    A: LinearOperator,
    *,
    tol: float = 1e-6,
    max_iters: int = 1000,
    dtype: torch.dtype = torch.float64,
    device=None,
    generator: torch.Generator | None = None,
) -> PowerIterationResult:
    """The eigenvalue of largest magnitude of a self-adjoint operator, by power iteration.

    Parameters
    ----------
    A : LinearOperator
        Self-adjoint, with ``in_shape == out_shape`` (not verified: power
        iteration on a non-normal operator gives a Rayleigh quotient, not an
        eigenvalue).
    tol : float, default 1e-6
        Stop when the residual bound falls below ``tol * |value|``.
    max_iters : int, default 1000
    dtype : torch.dtype, default float64
    device : torch.device or str, optional
    generator : torch.Generator, optional
        For the random start vector; a fixed seed is used when omitted.

    Returns
    -------
    PowerIterationResult

    Notes
    -----
    Power iteration converges like ``(lambda_2 / lambda_1)^k``: slowly when
    the top of the spectrum is clustered (``R^H R`` for a 2x resize has
    ``lambda_2 / lambda_1 ~ 0.994`` at 32 px). ``converged=False`` then says
    so; the estimate is still a Rayleigh quotient, a lower bound on the
    largest eigenvalue of a self-adjoint operator.

    Examples
    --------
    >>> import torch, linops
    >>> B = linops.GaussianBlur((16, 16), 1.0, boundary="circular")
    >>> res = linops.lambda_max(B, tol=1e-8)
    >>> round(res.value, 6), res.converged  # the constant image is kept as is
    (1.0, True)
    """
    device = _check(A, tol, max_iters, "lambda_max", square=True, dtype=dtype, device=device,
                    generator=generator)
    return _power(
        A.apply,
        A.in_shape,
        tol=tol,
        max_iters=max_iters,
        dtype=dtype,
        device=device,
        generator=generator,
        scale=lambda theta, res: (theta, res),
    )


def spectral_norm(
    A: LinearOperator,
    *,
    tol: float = 1e-6,
    max_iters: int = 1000,
    dtype: torch.dtype = torch.float64,
    device=None,
    generator: torch.Generator | None = None,
) -> PowerIterationResult:
    """The spectral norm ``||A||_2`` (largest singular value), by power iteration on ``A^H A``.

    Parameters
    ----------
    A : LinearOperator
    tol : float, default 1e-6
        Relative tolerance on the norm.
    max_iters : int, default 1000
    dtype : torch.dtype, default float64
    device : torch.device or str, optional
    generator : torch.Generator, optional

    Returns
    -------
    PowerIterationResult
        ``error_estimate`` is ``r / (2 sigma)`` for the eigen-residual ``r`` of
        ``A^H A`` (first order in ``r``).

    Examples
    --------
    >>> import torch, linops
    >>> A = linops.Dense(torch.tensor([[3.0, 0.0], [0.0, -5.0]]))
    >>> round(linops.spectral_norm(A).value, 6)
    5.0
    """
    device = _check(A, tol, max_iters, "spectral_norm", dtype=dtype, device=device,
                    generator=generator)

    def scale(theta, res):
        sigma = math.sqrt(max(theta, 0.0))
        return sigma, (res / (2 * sigma) if sigma > 0 else math.sqrt(res))

    return _power(
        lambda v: A.apply_adjoint(A.apply(v)),
        A.in_shape,
        tol=tol,
        max_iters=max_iters,
        dtype=dtype,
        device=device,
        generator=generator,
        scale=scale,
    )
