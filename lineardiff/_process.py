"""The generalized linear diffusion process ``x_t = A_t x_0 + sigma_t eps``."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

import linops
from linops._structure import shifted_kronecker

from ._checks import (
    check_device,
    check_float_dtype,
    check_generator,
    check_int,
    check_real,
    check_real_tensor,
    check_shape,
    check_timesteps,
)
from ._entry import calibrated_view

__all__ = ["DiffusionProcess", "LinearDiffusion", "Posterior"]


def _fmt(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _as_data(where: str, name: str, x, shape) -> torch.Tensor:
    """A batch of states ``(N, *shape)``: integer images become the default float dtype
    (never integer arithmetic with the scales), NaN and inf are refused."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where}: expected {name} as a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape[1:]) != tuple(shape) or x.dim() != len(shape) + 1:
        raise ValueError(f"{where}: expected {name} of shape (N, *{_fmt(shape)}), got "
                         f"{_fmt(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{where}: expected a non-empty batch {name}, got shape {_fmt(x.shape)}")
    return check_real_tensor(where, name, x)


def _check_noise(where: str, noise, shape) -> torch.Tensor:
    """A noise tensor given to ``q_sample``: of the state's shape, real and finite."""
    if not isinstance(noise, torch.Tensor) or tuple(noise.shape) != tuple(shape):
        got = _fmt(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
        raise ValueError(f"{where}: expected noise of shape {_fmt(shape)}, got {got}")
    return check_real_tensor(where, "noise", noise, convert=False)


def _lambda_max_normal(base: linops.LinearOperator) -> float:
    """``lambda_max(B^T B)``: exact for Kronecker-structured ``B``, Lanczos otherwise."""
    if isinstance(base, linops.Identity):
        return 1.0
    if isinstance(base, linops.BasisDiagonal):
        return float(base.diag.abs().max()) ** 2
    normal = base.H @ base
    sk = shifted_kronecker(normal, torch.float64, "cpu")
    if sk is not None and sk.kron is not None and sk.a == 0:
        lam_h = torch.linalg.eigvalsh((sk.kron.G_h + sk.kron.G_h.T) / 2)
        lam_w = torch.linalg.eigvalsh((sk.kron.G_w + sk.kron.G_w.T) / 2)
        return sk.b * max(float(lam_h[-1] * lam_w[-1]), float(lam_h[0] * lam_w[0]))
    bounds = linops.spectral_bounds(normal, tol=1e-10)
    return bounds.upper + bounds.upper_error


@dataclass(frozen=True)
class Posterior:
    """The Gaussian ``q(x_s | x_t, x_0)``: a mean and a way to draw its noise.

    Attributes
    ----------
    mean : Tensor, shape (N, \\*shape_at(s))
    sigma : float
        ``sigma_s``.
    rho : float
        ``sigma_s^2 / sigma_t^2``.
    scale : float
        The scalar ``c`` of ``M_{s->t} = c B`` (``B`` a chain of base operators).
    base : LinearOperator or None
        ``B`` (None when it is the identity).
    """

    mean: torch.Tensor
    sigma: float
    rho: float
    scale: float
    base: linops.LinearOperator | None

    def covariance_operator(self) -> linops.LinearOperator:
        """``I - rho c^2 B^T B`` (the covariance divided by ``sigma_s^2``), implicit."""
        shape = self.mean.shape[1:]
        coef = self.rho * self.scale**2
        if self.base is None:
            return linops.ScaledIdentity(shape, 1.0 - coef)
        if isinstance(self.base, linops.BasisDiagonal):  # stays diagonal: f(cov) is exact
            return self.base.with_diag(1.0 - coef * self.base.diag.abs() ** 2)
        return linops.Identity(shape) - coef * (self.base.H @ self.base)

    def noise(self, xi: torch.Tensor, **funm_kwargs) -> torch.Tensor:
        """``sigma_s (I - rho M^T M)^{1/2} xi`` through :func:`linops.sqrtm` (never dense)."""
        if self.sigma == 0:
            return torch.zeros_like(xi)
        return self.sigma * linops.sqrtm(self.covariance_operator(), xi, **funm_kwargs).value

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw ``mean + noise(xi)``, ``xi ~ N(0, I)``."""
        xi = torch.randn(
            self.mean.shape, dtype=self.mean.dtype, device=self.mean.device, generator=generator
        )
        return self.mean + self.noise(xi)


class DiffusionProcess:
    """What samplers and training need from a process (states ``t = 0..T``, ``x_0`` clean).

    Subclasses provide ``T``, ``name``, ``shape_at``, ``q_sample``, ``posterior``,
    ``posterior_from_signal``, ``signal_from_noise``, ``prior_sample`` and
    ``signal_target``; the capability queries below (:attr:`changes_shape`,
    :attr:`default_prediction`, :attr:`sr_sizes`, :meth:`low_res`,
    :meth:`super_resolution_entry`) are what the rest of the library asks a process, so a
    user's own process works wherever a built-in one does.
    """

    T: int
    name: str

    # --------------------------------------------------------- capabilities
    @property
    def changes_shape(self) -> bool:
        """Whether some state has another shape than ``x_0`` (SSD's resolution changes)."""
        first = self.shape_at(0)
        return any(self.shape_at(t) != first for t in range(1, self.T + 1))

    @property
    def default_prediction(self) -> str:
        """What a network learns by default, ``"signal"`` or ``"eps"``.

        ``"signal"`` (the clean image carried to the next state) is needed when the shape
        changes; the others predict the noise."""
        return "signal" if self.changes_shape else "eps"

    @property
    def sr_sizes(self) -> tuple[int, ...] | None:
        """Input widths super-resolution can enter at.

        ``()`` none (the default), a tuple of sizes (SSD: its coarser levels) or ``None``
        for any width up to ``shape_at(0)`` (SKILD)."""
        return ()

    def signal_target(self, x0: torch.Tensor, t: int) -> torch.Tensor:
        """The ``"signal"`` training target for state ``t``: the clean image as the network
        should predict it at ``t`` (the next state's view, ``B_{0->t-1} x0`` for a
        :class:`LinearDiffusion`)."""
        raise NotImplementedError(f"{self.name}: signal_target is not defined for this process")

    def low_res(self, x0: torch.Tensor, size: int) -> torch.Tensor:
        """The low-resolution view, ``size`` pixels wide, of clean images ``x0`` that
        super-resolution inputs are (what :meth:`super_resolution_entry` expects)."""
        raise ValueError(f"{self.name}.low_res: this process has no low-resolution view")

    def super_resolution_entry(self, y: torch.Tensor, *, generator=None):
        """``(start, x_start)``: the state a low-resolution input ``y`` enters the reverse
        chain at, and that state drawn given ``y``."""
        raise ValueError(
            f"{self.name}.super_resolution_entry: expected a process whose states change "
            "resolution (SSD) or that super-resolves from any size (SKILD)"
        )

    def _check_t(self, t, where: str, low: int = 0) -> int:
        """One timestep: a Python int or a 0-dim integer tensor in ``[low, T]``; floats and
        booleans are a :class:`TypeError` (never truncated), out of range a ValueError."""
        message = f"{self.name}.{where}: expected an integer t in [{low}, {self.T}], got {t!r}"
        if isinstance(t, torch.Tensor) and t.dim() == 0 and not t.is_floating_point() \
                and not t.is_complex() and t.dtype != torch.bool:
            t = int(t)
        if isinstance(t, bool) or not isinstance(t, numbers.Integral):
            raise TypeError(message)
        if not low <= t <= self.T:
            raise ValueError(message)
        return int(t)

    def _check_prior_args(self, n, generator, where: str = "prior_sample", *, dtype=None,
                          device=None) -> int:
        where = f"{self.name}.{where}"
        check_generator(where, "generator", generator)
        if dtype is not None:
            check_float_dtype(where, "dtype", dtype)
        if device is not None:
            check_device(where, "device", device)
        return check_int(where, "n", n, 1)

    def _check_pair(self, t, s, **tensors) -> tuple[int, int]:
        """Validate ``0 <= s < t <= T`` and the shapes of the named state tensors."""
        where = f"{self.name}.posterior"
        t, s = self._check_t(t, "posterior", low=1), self._check_t(s, "posterior")
        if s >= t:
            raise ValueError(f"{where}: expected s < t, got s={s}, t={t}")
        expected = {"x_t": self.shape_at(t), "x0": self.shape_at(0), "signal_s": self.shape_at(s)}
        batch = None
        for name, x in tensors.items():
            shp = expected[name]
            if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != shp:
                got = _fmt(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(f"{where}: expected {name} of shape (N, *{_fmt(shp)}), got {got}")
            if batch is not None and x.shape[0] != batch[1]:
                raise ValueError(f"{where}: expected {name} with the batch size of {batch[0]} "
                                 f"({batch[1]}), got {x.shape[0]}")
            batch = batch or (name, x.shape[0])
            check_real_tensor(where, name, x, convert=False)
        return t, s


class LinearDiffusion(DiffusionProcess):
    """A linear Gaussian diffusion with isotropic marginals and per-step operators.

    ``x_t = M_t x_{t-1} + eta_t`` for ``t = 1..T`` with ``M_t = c_t B_t`` (a scalar
    times a base operator that may change the shape, e.g. a resize), and marginals
    ``x_t = A_t x_0 + sigma_t eps``, ``A_t = M_t ... M_1``. DDPM, Blurring Diffusion in
    pixel space and Scale Space Diffusion are choices of ``c_t``, ``B_t`` and
    ``sigma_t`` (docs/processes.rst).

    Parameters
    ----------
    scales : sequence of float, length T
        ``c_1 .. c_T``.
    bases : sequence of LinearOperator or None, length T
        ``B_1 .. B_T``; ``None`` means the identity. Consecutive shapes must chain.
    sigmas : sequence of float, length T + 1
        ``sigma_0 = 0, sigma_1 .. sigma_T``.
    shape : sequence of int
        Per-sample shape of ``x_0``.

    Raises
    ------
    ValueError
        When shapes do not chain, sigmas are not finite, non-negative and
        non-decreasing with ``sigma_0 = 0``, or a step is infeasible: the one-step covariance
        ``sigma_t^2 I - sigma_{t-1}^2 M_t M_t^T`` must be PSD, i.e.
        ``sigma_t^2 >= sigma_{t-1}^2 c_t^2 lambda_max(B_t^T B_t)`` (SSD Eq. 4). The
        message names the step and the margin.
    """

    def __init__(self, scales, bases, sigmas, shape, *, name: str = "LinearDiffusion") -> None:
        self.name = name
        scales = [check_real(name, f"scale c_{t}", c) for t, c in enumerate(scales, start=1)]
        shape = check_shape(name, "shape", shape)
        bases = list(bases)
        sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
        T = len(scales)
        if T < 1 or len(bases) != T or sigmas.shape != (T + 1,):
            raise ValueError(
                f"{name}: expected T >= 1 scales, T bases and T + 1 sigmas, got {len(scales)}, "
                f"{len(bases)} and {tuple(sigmas.shape)}"
            )
        if not bool(torch.isfinite(sigmas).all()) or bool((sigmas < 0).any()) or sigmas[0] != 0:
            raise ValueError(
                f"{name}: expected finite sigmas >= 0 with sigma_0 = 0, "
                f"got {sigmas[:4].tolist()}..."
            )
        drops = (sigmas[1:] < sigmas[:-1]).nonzero().flatten()
        if drops.numel():
            t = int(drops[0]) + 1
            raise ValueError(
                f"{name}: expected non-decreasing sigmas, got sigma_{t} = {float(sigmas[t]):.6g} < "
                f"sigma_{t - 1} = {float(sigmas[t - 1]):.6g} at step {t}"
            )
        shapes = [tuple(int(s) for s in shape)]
        for t, base in enumerate(bases, start=1):
            if base is None:
                shapes.append(shapes[-1])
                continue
            if not isinstance(base, linops.LinearOperator):
                raise TypeError(
                    f"{name}: expected step {t} base to be a LinearOperator or None, "
                    f"got {type(base).__name__}"
                )
            if base.in_shape != shapes[-1]:
                raise ValueError(
                    f"{name}: step {t} expected an operator with in_shape {_fmt(shapes[-1])}, "
                    f"got {_fmt(base.in_shape)}"
                )
            shapes.append(base.out_shape)
        self.T = T
        self.scales = scales
        self.bases = bases
        self.sigmas = sigmas
        self._shapes = shapes
        self._identity_bases = all(b is None for b in bases)
        self._scale_table = torch.tensor(
            [math.prod(scales[:t]) for t in range(T + 1)], dtype=torch.float64
        )
        self._check_feasible()

    # ----------------------------------------------------------- validation
    def _check_feasible(self) -> None:
        cache: dict[int, float] = {}
        for t in range(1, self.T + 1):
            base = self.bases[t - 1]
            if base is None:
                lam = 1.0
            else:
                key = id(base)
                if key not in cache:
                    cache[key] = _lambda_max_normal(base)
                lam = cache[key]
            need = float(self.sigmas[t - 1]) ** 2 * self.scales[t - 1] ** 2 * lam
            have = float(self.sigmas[t]) ** 2
            if have < need * (1 - 1e-9) - 1e-15:
                raise ValueError(
                    f"{self.name}: step {t} is infeasible: sigma_t^2 = {have:.6g} must be >= "
                    f"sigma_(t-1)^2 c_t^2 lambda_max(B_t^T B_t) = {need:.6g} "
                    f"(margin {have - need:.3g}); "
                    "the one-step noise covariance would not be positive semidefinite"
                )

    # -------------------------------------------------------------- queries
    def shape_at(self, t: int) -> tuple[int, ...]:
        """Per-sample shape of ``x_t``."""
        return self._shapes[self._check_t(t, "shape_at")]

    def sigma(self, t: int) -> float:
        """``sigma_t``."""
        return float(self.sigmas[self._check_t(t, "sigma")])

    def _chain(self, s: int, t: int) -> tuple[float, linops.LinearOperator | None]:
        """``M_{s->t} = c B``: the product of scales and the composed non-identity bases."""
        c = math.prod(self.scales[s:t])
        ops = [b for b in self.bases[s:t] if b is not None]
        if not ops:
            return c, None
        if all(isinstance(b, linops.BasisDiagonal) and b.basis is ops[0].basis for b in ops):
            diag = ops[0].diag
            for op in ops[1:]:
                diag = diag * op.diag
            return c, ops[0].with_diag(diag)  # diagonal in one basis: the product of diagonals
        base = ops[0]
        for op in ops[1:]:
            base = op @ base
        return c, base

    def transition_operator(self, s: int, t: int) -> linops.LinearOperator:
        """``M_{s->t} = M_t ... M_{s+1}`` for ``s <= t`` as one implicit operator."""
        s, t = self._check_t(s, "transition_operator"), self._check_t(t, "transition_operator")
        if s > t:
            raise ValueError(f"{self.name}.transition_operator: expected s <= t, got s={s}, t={t}")
        c, base = self._chain(s, t)
        if base is None:
            return linops.ScaledIdentity(self._shapes[s], c)
        return c * base

    def step_operator(self, t: int) -> linops.LinearOperator:
        """``M_t``."""
        t = self._check_t(t, "step_operator", low=1)
        return self.transition_operator(t - 1, t)

    def signal_operator(self, t: int) -> linops.LinearOperator:
        """``A_t = M_t ... M_1`` (``A_0 = I``)."""
        return self.transition_operator(0, self._check_t(t, "signal_operator"))

    def signal_scale(self, t: int) -> float:
        """``a_t``: the scalar part of ``A_t``."""
        return math.prod(self.scales[: self._check_t(t, "signal_scale")])

    def transition(self, s: int, t: int) -> tuple[float, linops.LinearOperator | None]:
        """``M_{s->t} = c B`` as ``(c, B)``: the product of the scales and the composed
        non-identity bases (``B`` is ``None`` for the identity; ``s <= t``)."""
        s, t = self._check_t(s, "transition"), self._check_t(t, "transition")
        if s > t:
            raise ValueError(f"{self.name}.transition: expected s <= t, got s={s}, t={t}")
        return self._chain(s, t)

    # --------------------------------------------------------- capabilities
    @property
    def sr_sizes(self) -> tuple[int, ...]:
        first = self._shapes[0]
        return tuple(sorted({sh[-1] for sh in self._shapes[1:] if sh != first}))

    def signal_target(self, x0: torch.Tensor, t: int) -> torch.Tensor:
        t = self._check_t(t, "signal_target", low=1)
        _, base = self._chain(0, t - 1)
        return x0 if base is None else base.apply(x0)

    def _entry(self, size: int, where: str) -> int:
        if not self.sr_sizes:
            raise ValueError(f"{where}: this process has no low-resolution view (all its states "
                             "have one shape)")
        if size not in self.sr_sizes:
            raise ValueError(
                f"{where}: expected inputs at one of the process's coarser resolutions "
                f"{list(self.sr_sizes)}, got {size}"
            )
        return next(t for t in range(1, self.T + 1) if self._shapes[t][-1] == size)

    def low_res(self, x0: torch.Tensor, size: int) -> torch.Tensor:
        """``B_{0->start} x0``: the clean images carried to the first state ``size`` wide (SSD:
        the chain of antialiased resizes), without the scale ``a_start``."""
        _, base = self._chain(0, self._entry(size, f"{self.name}.low_res"))
        return x0 if base is None else base.apply(x0)

    def super_resolution_entry(self, y: torch.Tensor, *, generator=None, calibration=None):
        """Enter at the first state of ``y``'s shape: ``x = a_start y + sigma_start eps``.

        ``y`` is the view :meth:`low_res`; with ``calibration`` (other measurements, e.g.
        block spins) it is first drawn given ``y`` (:func:`~lineardiff.calibrated_view`)."""
        where = f"{self.name}.super_resolution_entry"
        if not isinstance(y, torch.Tensor) or y.dim() < 2:
            raise ValueError(f"{where}: expected y as a tensor (N, *shape), got {y!r:.60}")
        start = self._entry(int(y.shape[-1]), where)
        if tuple(y.shape[1:]) != self._shapes[start]:
            raise ValueError(
                f"{where}: expected inputs of per-sample shape {_fmt(self._shapes[start])}, "
                f"got {_fmt(y.shape[1:])}"
            )
        if calibration is not None:
            y = calibrated_view(self, y, calibration, generator)
        noise = torch.randn(y.shape, dtype=y.dtype, device=y.device, generator=generator)
        return start, self.signal_scale(start) * y + self.sigma(start) * noise

    # ------------------------------------------------------------- sampling
    def q_sample(self, x0: torch.Tensor, t, noise=None, *, generator=None) -> torch.Tensor:
        """Draw ``x_t = A_t x_0 + sigma_t eps``.

        Parameters
        ----------
        x0 : Tensor, shape (N, \\*shape_at(0))
        t : int or Tensor of shape (N,)
            The states of a batch must share one shape (one resolution); the signal
            operator is applied once per distinct ``t``.
        noise : Tensor, shape (N, \\*shape_at(t)), optional
        generator : torch.Generator, optional

        Returns
        -------
        Tensor, shape (N, \\*shape_at(t))
        """
        where = f"{self.name}.q_sample"
        x0 = _as_data(where, "x0", x0, self._shapes[0])
        n = x0.shape[0]
        t = check_timesteps(where, "t", t, 0, self.T)
        if isinstance(t, torch.Tensor) and t.shape[0] != n:
            raise ValueError(f"{where}: expected t of shape ({n},), got {t.shape[0]} values")
        if isinstance(t, int):
            _, base = self._chain(0, t)
            signal = x0 if base is None else base.apply(x0)
            index = torch.full((n,), t, device=x0.device)
        elif self._identity_bases:  # DDPM, VE: scales gathered on the device, no host sync
            signal, index = x0, t.to(x0.device)
        if isinstance(t, int) or self._identity_bases:
            a = self._scale_table.to(device=x0.device, dtype=x0.dtype)[index]
            sig = self.sigmas.to(device=x0.device, dtype=x0.dtype)[index]
        else:
            ts = t.tolist()
            shapes = {self._shapes[v] for v in ts}
            if len(shapes) != 1:
                raise ValueError(
                    f"{where}: expected timesteps whose states share one shape, got t in "
                    f"{sorted(set(ts))} with shapes {sorted(shapes)}"
                )
            signal = x0.new_empty((n, *self._shapes[ts[0]]))
            index = t.to(x0.device)
            for v in sorted(set(ts)):  # one operator application per distinct t
                rows = (index == v).nonzero().flatten()
                _, base = self._chain(0, v)
                part = x0[rows]
                signal[rows] = part if base is None else base.apply(part)
            a = self._scale_table.to(device=x0.device, dtype=x0.dtype)[index]
            sig = self.sigmas.to(device=x0.device, dtype=x0.dtype)[index]
        view = (n,) + (1,) * (signal.dim() - 1)
        if noise is None:
            noise = torch.randn(signal.shape, dtype=x0.dtype, device=x0.device, generator=generator)
        else:
            noise = _check_noise(where, noise, signal.shape)
        return a.reshape(view) * signal + sig.reshape(view) * noise

    def posterior(self, x_t: torch.Tensor, x0: torch.Tensor, t: int, s: int) -> Posterior:
        """The exact Gaussian ``q(x_s | x_t, x_0)`` for ``s < t`` (Kalman form, SSD Eq. 6).

        With ``M = M_{s->t} = c B`` and ``rho = sigma_s^2 / sigma_t^2``:
        ``mean = A_s x_0 + rho M^T (x_t - M A_s x_0)``,
        ``cov = sigma_s^2 (I - rho M^T M)``.

        Parameters
        ----------
        x_t : Tensor, shape (N, \\*shape_at(t))
        x0 : Tensor, shape (N, \\*shape_at(0))
            The clean image (or a network's estimate of it).
        t, s : int
            ``0 <= s < t <= T``.

        Returns
        -------
        Posterior
        """
        t, s = self._check_pair(t, s, x_t=x_t, x0=x0)
        _, chain_s = self._chain(0, s)
        return self.posterior_from_signal(x_t, x0 if chain_s is None else chain_s.apply(x0), t, s)

    def posterior_from_signal(self, x_t: torch.Tensor, signal_s: torch.Tensor, t: int, s: int):
        """:meth:`posterior` given ``B_{0->s} x_0`` (the clean image carried to state ``s``).

        This is what a network predicts when the shape changes (SSD predicts the
        clean image at the next resolution): ``A_s x_0 = a_s B_{0->s} x_0``.

        Parameters
        ----------
        x_t : Tensor, shape (N, \\*shape_at(t))
        signal_s : Tensor, shape (N, \\*shape_at(s))
        t, s : int

        Returns
        -------
        Posterior
        """
        t, s = self._check_pair(t, s, x_t=x_t, signal_s=signal_s)
        mu_s = self.signal_scale(s) * signal_s
        sig_s, sig_t = self.sigma(s), self.sigma(t)
        rho = sig_s**2 / sig_t**2
        c, base = self._chain(s, t)
        if base is None:
            mean = mu_s + rho * c * (x_t - c * mu_s)
        else:
            mean = mu_s + rho * c * base.apply_adjoint(x_t - c * base.apply(mu_s))
        return Posterior(mean, sig_s, rho, c, base)

    def signal_from_noise(self, x_t: torch.Tensor, eps: torch.Tensor, t: int, s: int):
        """``B_{0->s} x_0`` from a noise prediction ``eps`` at state ``t`` (``s < t``).

        ``B_{0->t} x_0 = (x_t - sigma_t eps) / a_t``; carried back to ``s`` through the
        inverse of ``B_{s->t}``, which exists for identities and invertible
        ``BasisDiagonal`` chains (DDPM, VE, Blurring Diffusion). Across a resolution
        change predict the signal instead.
        """
        signal_t = (x_t - self.sigma(t) * eps) / self.signal_scale(t)
        _, base = self._chain(s, t)
        if base is None:
            return signal_t
        if isinstance(base, linops.BasisDiagonal):
            return base.with_diag(1.0 / base.diag).apply(signal_t)
        raise ValueError(
            f"{self.name}.signal_from_noise: expected an invertible step between s={s} and t={t} "
            f"(identity or BasisDiagonal), got {base.name}; use a signal (x0) prediction"
        )

    def prior_sample(
        self, n: int, *, generator=None, dtype=torch.float32, device=None
    ) -> torch.Tensor:
        """``x_T ~ N(0, sigma_T^2 I)`` at ``shape_at(T)`` (the residual signal is dropped)."""
        n = self._check_prior_args(n, generator, dtype=dtype, device=device)
        shape = (n, *self._shapes[self.T])
        return self.sigma(self.T) * torch.randn(
            shape, dtype=dtype, device=device, generator=generator
        )

    def __repr__(self) -> str:
        first, last = _fmt(self._shapes[0]), _fmt(self._shapes[self.T])
        return f"{self.name}(T={self.T}, shape_at(0)={first}, shape_at(T)={last})"
