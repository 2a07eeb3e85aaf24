"""SKILD: per-mode damping in DCT space with spectrum-matched noise."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import linops

from ._checks import check_int, check_real, check_shape, check_timesteps
from ._entry import calibrated_entry
from ._process import DiffusionProcess, _as_data, _check_noise
from ._skild_schedules import skild_lambda, skild_wavenumber2
from ._spectrum import PowerSpectrumFit

__all__ = ["SKILD", "DiagonalPosterior"]


@dataclass(frozen=True)
class DiagonalPosterior:
    """A Gaussian posterior whose covariance is diagonal in an orthonormal basis.

    Attributes
    ----------
    mean : Tensor, shape (N, \\*shape)
    variance : Tensor, shape (H, W)
        Per-mode posterior variance in the basis.
    basis : LinearOperator
    """

    mean: torch.Tensor
    variance: torch.Tensor
    basis: linops.LinearOperator

    def covariance_operator(self) -> linops.BasisDiagonal:
        """The covariance ``V^T diag(variance) V`` (implicit)."""
        return linops.BasisDiagonal(self.basis, self.variance)

    def noise(self, xi: torch.Tensor) -> torch.Tensor:
        """``cov^{1/2} xi`` through :func:`linops.sqrtm` (exact: the covariance is diagonal)."""
        if bool((self.variance == 0).all()):
            return torch.zeros_like(xi)
        return linops.sqrtm(self.covariance_operator(), xi).value

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw ``mean + noise(xi)``."""
        xi = torch.randn(
            self.mean.shape, dtype=self.mean.dtype, device=self.mean.device, generator=generator
        )
        return self.mean + self.noise(xi)


class SKILD(DiffusionProcess):
    """SKILD: DCT-space damping ``alphabar_t(k) = exp(-max(|k|^2, k_c^2) lambda(t))`` and
    spectrum-matched noise.

    Per orthonormal-DCT mode ``k`` the marginal is
    ``X_t(k) = sqrt(alphabar_t(k)) X_0(k) + sqrt((1 - alphabar_t(k)) S_0(k)) eps(k)``; states
    ``t = 1..T`` sit at ``t / T`` and ``x_0`` is the clean image. Everything is diagonal in
    the DCT basis, so posteriors (Section 0's Kalman form, per mode) are exact.

    Parameters
    ----------
    shape : (C, H, W)
    spectrum : Tensor of shape (H, W) or PowerSpectrumFit
        ``S_0(k)`` in our orthonormal DCT normalisation, e.g.
        ``fit_power_spectrum(data)``.
    T : int, default 1000
    lambda_schedule : {"linear", "log_linear"}, default "linear"
        ``"linear"`` in wavenumber, ``lambda(t) = theta t / (lambda_i (1 - t) + lambda_f)^2``
        with ``lambda_i = sqrt(2) pi (H - 1)``; ``"log_linear"``,
        ``lambda(t) = t 10^(lambda_i + (lambda_f - lambda_i) t)`` (the authors' ablation,
        with ``lambda_i = -3.75``, ``lambda_f = -2.0``, ``k_c = 31.2`` there).
    k_c, theta : float, default 3.0, 5.0
        The generation configuration of the paper's code.
    lambda_f : float, optional
        Default 1.57 (linear) or -2.0 (log-linear).
    lambda_i : float, optional
        Overrides the schedule's ``lambda_i``.

    Notes
    -----
    The network predicts the noise (``prediction="eps"``). The paper's MSE in DCT space
    equals the pixel-space MSE because our DCT is orthonormal.

    Examples
    --------
    >>> import torch, lineardiff
    >>> fit = lineardiff.PowerSpectrumFit(C=1.0, k0=3.0, alpha=1.5)
    >>> p = lineardiff.SKILD((1, 8, 8), fit, T=50)
    >>> p.q_sample(torch.zeros(2, 1, 8, 8), 25).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        shape,
        spectrum,
        *,
        T: int = 1000,
        lambda_schedule: str = "linear",
        k_c: float = 3.0,
        lambda_f: float | None = None,
        theta: float = 5.0,
        lambda_i: float | None = None,
    ) -> None:
        shape = check_shape("SKILD", "shape", shape)
        if len(shape) != 3:
            raise ValueError(f"SKILD: expected shape (C, H, W), got {shape}")
        T = check_int("SKILD", "T", T, 1)
        k_c = check_real("SKILD", "k_c", k_c, low=0, open_low=False)
        for name, value in (("lambda_f", lambda_f), ("lambda_i", lambda_i)):
            if value is not None:
                check_real("SKILD", name, value)
        hw = shape[1:]
        if isinstance(spectrum, PowerSpectrumFit):
            spectrum = spectrum.spectrum(hw)
        if not isinstance(spectrum, torch.Tensor) or tuple(spectrum.shape) != hw:
            got = (
                tuple(spectrum.shape)
                if isinstance(spectrum, torch.Tensor)
                else type(spectrum).__name__
            )
            raise ValueError(
                f"SKILD: expected spectrum of shape {hw} or a PowerSpectrumFit, got {got}"
            )
        if not bool((spectrum > 0).all()):
            raise ValueError("SKILD: expected a positive spectrum S_0(k) on every mode")
        self.name = "SKILD"
        self.T = T
        self.shape = shape
        self.spectrum = spectrum.to(torch.float64)
        times = torch.arange(0, T + 1, dtype=torch.float64) / T
        if lambda_schedule == "linear":
            lambda_f = 1.57 if lambda_f is None else lambda_f
            if lambda_i is None:
                lam = skild_lambda(times, hw[0], lambda_f=lambda_f, theta=theta)
            else:
                lam = theta * times / (lambda_i * (1 - times) + lambda_f) ** 2
        elif lambda_schedule == "log_linear":
            li = -3.75 if lambda_i is None else lambda_i
            lambda_f = -2.0 if lambda_f is None else lambda_f
            lam = times * 10 ** (li + (lambda_f - li) * times)
        else:
            raise ValueError(
                f"SKILD: expected lambda_schedule 'linear' or 'log_linear', got {lambda_schedule!r}"
            )
        k2 = skild_wavenumber2(hw).clamp_min(k_c**2)
        self.lam = lam  # (T + 1,)
        self.alphabar = torch.exp(-k2 * lam[:, None, None])  # (T + 1, H, W)
        self.variance = (1 - self.alphabar) * self.spectrum
        if not bool((self.alphabar[1:] <= self.alphabar[:-1]).all()):
            raise ValueError("SKILD: expected alphabar_t(k) non-increasing in t for every mode")
        self.dct = linops.DCT2(shape)

    def shape_at(self, t: int) -> tuple[int, ...]:
        self._check_t(t, "shape_at")
        return self.shape

    def _coef(self, table, t, like):
        return table[t].to(dtype=like.dtype, device=like.device)

    def q_sample(self, x0, t, noise=None, *, generator=None):
        """Draw ``x_t`` (``t`` an int or a tensor ``(N,)``); see the class docstring."""
        where = "SKILD.q_sample"
        x0 = _as_data(where, "x0", x0, self.shape)
        n = x0.shape[0]
        t = check_timesteps(where, "t", t, 0, self.T)
        if isinstance(t, int):
            ts = torch.full((n,), t, dtype=torch.long)
        elif t.shape[0] != n:
            raise ValueError(f"{where}: expected t of shape ({n},), got {t.shape[0]} values")
        else:
            ts = t
        if noise is None:
            noise = torch.randn(x0.shape, dtype=x0.dtype, device=x0.device, generator=generator)
        else:
            noise = _check_noise(where, noise, x0.shape)
        a = self._coef(self.alphabar.sqrt(), ts.cpu(), x0).unsqueeze(1)
        s = self._coef(self.variance.sqrt(), ts.cpu(), x0).unsqueeze(1)
        return linops.idct2(a * linops.dct2(x0) + s * linops.dct2(noise))

    def posterior_from_signal(self, x_t, signal_s, t, s):
        """Per-mode Kalman posterior ``q(x_s | x_t, x0)``; the signal is ``x0`` itself."""
        t, s = self._check_pair(t, s, x_t=x_t, signal_s=signal_s)
        ab_s, ab_t = self.alphabar[s], self.alphabar[t]
        var_s, var_t = self.variance[s], self.variance[t]
        # a mode damped to exactly zero by state s carries nothing from s to t
        m = torch.where(ab_s > 0, (ab_t / torch.where(ab_s > 0, ab_s, 1.0)).sqrt(), 0.0)
        gain = var_s * m / var_t
        mu_s = ab_s.sqrt().to(x_t) * linops.dct2(signal_s)
        mean = mu_s + gain.to(x_t) * (linops.dct2(x_t) - m.to(x_t) * mu_s)
        cov = (var_s - gain * m * var_s).clamp_min(0)
        return DiagonalPosterior(linops.idct2(mean), cov.to(x_t), self.dct)

    def posterior(self, x_t, x0, t, s):
        """``q(x_s | x_t, x0)``."""
        return self.posterior_from_signal(x_t, x0, t, s)

    #: Per-mode SNR ``alphabar_t / (1 - alphabar_t)`` below which a noise prediction is not
    #: turned into a signal estimate (see :meth:`signal_from_noise`).
    min_snr: float = 1e-2

    def signal_from_noise(self, x_t, eps, t, s):
        """``x0`` from a noise prediction: ``X_0 = (X_t - sqrt(var_t) E) / sqrt(alphabar_t)``.

        Only on the modes whose SNR at ``t``, ``alphabar_t / (1 - alphabar_t)`` (the noise
        spectrum matches the data's), is at least :attr:`min_snr`; the others get the prior
        mean 0. Dividing by ``sqrt(alphabar_t)`` multiplies an error ``delta`` of the predicted
        noise by ``1 / sqrt(SNR)``: the high modes are damped like ``exp(-|k|^2 lambda)``, so
        for most of the chain their SNR is below 1e-10 and a network's noise error of a few
        percent became an ``x0`` error of 1e3-1e8 that clipping could not repair (the
        samples of a trained model diverged). A mode below the floor holds less than
        ``min_snr`` of its signal power in ``x_t``; its best estimate is within that fraction
        of the prior mean, while the division's error is ``delta^2 / SNR`` of it, larger
        whenever ``SNR < delta^2`` (about 1e-2 for a network with a noise error of 0.1).
        """
        t = self._check_t(t, "signal_from_noise", low=1)
        ab = self.alphabar[t]
        alive = (ab >= self.min_snr * (1 - ab)).to(x_t.device)
        root = ab.sqrt().to(x_t)
        X = linops.dct2(x_t) - self.variance[t].sqrt().to(x_t) * linops.dct2(eps)
        X = torch.where(alive, X / torch.where(alive, root, torch.ones_like(root)), 0.0)
        return linops.idct2(X)

    def prior_sample(self, n, *, generator=None, dtype=torch.float32, device=None):
        """``x_T ~ N(0, Sigma_T)`` (the residual signal is dropped)."""
        n = self._check_prior_args(n, generator, dtype=dtype, device=device)
        e = torch.randn((n, *self.shape), dtype=dtype, device=device, generator=generator)
        return linops.idct2(self.variance[self.T].sqrt().to(e) * linops.dct2(e))

    # --------------------------------------------------------- capabilities
    @property
    def default_prediction(self) -> str:
        """SKILD's network predicts the noise, ``"eps"``."""
        return "eps"

    @property
    def sr_sizes(self) -> None:
        """Any input width up to ``W``, non-integer factors included (``None``)."""
        return None

    def signal_target(self, x0: torch.Tensor, t: int) -> torch.Tensor:
        """``x0`` itself (the shape never changes)."""
        self._check_t(t, "signal_target", low=1)
        return x0

    def super_resolution_entry(self, y: torch.Tensor, *, generator=None, tau: float = 0.1,
                               calibration=None):
        """``(n0, X_n0)``: ``n0`` the first state with ``r_eff <= h`` (:meth:`start_step`) and
        ``X_n0 = sqrt(alphabar) X_in + sqrt((1 - alphabar) S_0) eps``, ``X_in`` the DCT of
        ``y`` embedded in the high-resolution grid (:meth:`embed`). Any factor works,
        non-integer ones included. With ``calibration``
        (:func:`~lineardiff.fit_entry_calibration`; for measurements other than the lowest
        DCT modes) ``X_n0`` is drawn from the calibrated ``q(x_n0 | y)`` instead: per-mode
        gains on ``X_in`` and the estimate's residual variance added to the noise."""
        where = "SKILD.super_resolution_entry"
        if not isinstance(y, torch.Tensor) or y.dim() != 4 or y.shape[1] != self.shape[0] \
                or y.shape[-1] > self.shape[-1] or y.shape[-2] > self.shape[-2]:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(
                f"{where}: expected y of shape (N, {self.shape[0]}, h, w) with w <= "
                f"{self.shape[-1]}, got {got}"
            )
        start = self.start_step(y.shape[-2], tau=tau)
        if calibration is not None:
            return start, calibrated_entry(self, y, start, calibration, generator)
        return start, self.q_sample(self.embed(y), start, generator=generator)

    def start_step(self, low_res: int, *, tau: float = 0.1) -> int:
        """The first state whose effective band is at most ``low_res`` (SR entry).

        ``r_eff(t) = sqrt(ln(1 + 1/tau) / lambda(t)) / (sqrt(2) pi)``: the modes still above
        a per-mode SNR ``tau`` (SNR = alphabar / (1 - alphabar) since ``S_0`` matches the data).
        """
        tau = check_real("SKILD.start_step", "tau", tau, low=0)
        band = (math.log(1 + 1 / tau) / self.lam[1:]).sqrt() / (math.sqrt(2) * math.pi)
        below = (band <= low_res).nonzero().flatten()
        return int(below[0]) + 1 if below.numel() else self.T

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        """A low-resolution image's DCT placed in the high-resolution grid (zeros above its band).

        Scaled by ``sqrt(HW / hw)`` so that a band-limited image keeps its pixel values
        (orthonormal DCTs of different lengths differ by that factor).
        """
        h, w = y.shape[-2:]
        H, W = self.shape[1:]
        X = torch.zeros((*y.shape[:-2], H, W), dtype=y.dtype, device=y.device)
        X[..., :h, :w] = linops.dct2(y) * ((H * W) / (h * w)) ** 0.5
        return linops.idct2(X)

    def low_res(self, x: torch.Tensor, size) -> torch.Tensor:
        """The low-resolution image of ``x`` that :meth:`embed` maps back: its lowest DCT modes.

        Keeps the ``h x w`` lowest orthonormal-DCT modes of ``x`` and inverts them on an
        ``h x w`` grid, scaled by ``sqrt(hw / HW)`` (so ``embed(low_res(x, (h, w)))`` is ``x``
        band-limited to those modes, and ``low_res(embed(y), y.shape[-2:])`` is ``y``).

        Parameters
        ----------
        x : Tensor, shape (..., H, W)
            Images at the process's resolution.
        size : int or (int, int)
            ``h`` or ``(h, w)``, at most ``(H, W)``.

        Returns
        -------
        Tensor, shape (..., h, w)

        Examples
        --------
        >>> import torch
        >>> from lineardiff import SKILD, PowerSpectrumFit
        >>> p = SKILD((1, 8, 8), PowerSpectrumFit(C=1.0, k0=1.0, alpha=2.0))
        >>> y = torch.randn(2, 1, 6, 6, dtype=torch.float64)
        >>> torch.allclose(p.low_res(p.embed(y), 6), y)
        True
        """
        H, W = self.shape[1:]
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        if not isinstance(x, torch.Tensor) or tuple(x.shape[-2:]) != (H, W):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"SKILD.low_res: expected x of shape (..., {H}, {W}), got {got}")
        if not (0 < h <= H and 0 < w <= W):
            raise ValueError(
                f"SKILD.low_res: expected a size between 1 and {(H, W)}, got {(h, w)}"
            )
        return linops.idct2(linops.dct2(x)[..., :h, :w]) * ((h * w) / (H * W)) ** 0.5
