"""The worked inverse problem of ``docs/inverse_problems.rst``: its figure and its numbers.

scikit-image's ``camera`` (area-resized to 256 x 256) is blurred, downsampled 2x and noised
as in :mod:`bench_inverse`, then recovered by Tikhonov regularisation about the mean of the
observation, (a) with ``linops.lsqr(A, y, damp=lambda)`` and (b) with ``linops.cg`` on the
normal equations preconditioned by their exact structured inverse; the same problem is
solved with PyLops' ``cgls`` and with ``scipy.sparse.linalg.lsqr`` through
``linops.as_scipy``. A last part breaks the Kronecker structure (10% of the observed pixels
dead) and counts CG iterations with and without a nearby structured preconditioner.

Run from the repository root (needs the ``bench`` extra)::

    python benchmarks/inverse_figure.py

Everything runs on one thread (torch, NumPy's BLAS, numba's kernels).

It prints every number the docs page quotes and writes
``docs/_static/inverse/camera.png``. Times are single runs, for orientation only; the
benchmark (``benchmarks/bench_inverse.py``) measures them properly.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse.linalg as spla
import torch
import torch.nn.functional as F

import linops

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inverse import (  # noqa: E402 - the problem is defined once, in the benchmark
    DAMP,
    NOISE,
    centre,
    exact_inverse,
    forward,
    normal_operator,
    normal_residual,
    observe,
    photos,
    psnr,
    pylops_basic,
    pylops_operator,
    same_threads,
    solve_as_operator,
)

SIZE = 256
TOL = 1e-6
OUT = Path(__file__).resolve().parents[1] / "docs" / "_static" / "inverse" / "camera.png"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(path: Path = OUT) -> None:
    with same_threads(1):
        run(path)


def run(path: Path) -> None:
    truth = photos(SIZE, ("camera",))[0]
    A = forward(SIZE)
    y_obs = observe(A, truth)
    y, m = centre(y_obs)
    m = m.squeeze()
    N = normal_operator(A)
    rhs = A.apply_adjoint(y)
    sqrt_m = math.sqrt(y.numel())
    print(f"camera {SIZE}x{SIZE} -> {SIZE // 2}x{SIZE // 2}, noise {NOISE}, damp {DAMP}")

    bicubic = F.interpolate(y_obs[None, None], size=(SIZE, SIZE), mode="bicubic")[0, 0]
    print(f"bicubic x2 of the observation: PSNR {psnr(bicubic, truth).item():.2f} dB")

    print("\nlambda  PSNR   ||A x - y|| / (sigma sqrt(m))   [exact solves]")
    for lam in (0.01, 0.02, 0.03, 0.05, 0.07, 0.1):
        u = linops.solve(normal_operator(A, lam), rhs).value
        disc = (A.apply(u) - y).norm().item() / (NOISE * sqrt_m)
        print(f"{lam:<6}  {psnr(u + m, truth).item():5.2f}  {disc:.2f}")
    no_centre = linops.solve(N, A.apply_adjoint(y_obs)).value
    print(f"damp {DAMP} without the mean: PSNR {psnr(no_centre, truth).item():.2f} dB")

    exact, t_exact = timed(lambda: linops.solve(N, rhs))
    exact, t_exact = timed(lambda: linops.solve(N, rhs))  # second call: eigh cached
    ls, t_ls = timed(lambda: linops.lsqr(A, y, damp=DAMP, tol=TOL))
    M = exact_inverse(A)
    cg, t_cg = timed(lambda: linops.cg(N, rhs, tol=TOL, M=M))
    plain, t_plain = timed(lambda: linops.cg(N, rhs, tol=TOL))

    P = pylops_operator(A)
    y_np = y.flatten().numpy()
    tol_cgls = (TOL * rhs.norm().item()) ** 2  # cgls: absolute tolerance on ||A^T r - l^2 x||^2
    (pl, _, pl_its, *_), t_pl = timed(
        lambda: pylops_basic.cgls(P, y_np, damp=DAMP, niter=10_000, tol=tol_cgls)
    )
    S = linops.as_scipy(A)
    (sp, _, sp_its, *_), t_sp = timed(
        lambda: spla.lsqr(S, y_np, damp=DAMP, atol=TOL, btol=TOL, iter_lim=10_000)
    )

    ref = exact.value
    print(
        "\nsolver                      iters  PSNR   normal residual  ||x - x_exact||/||x_exact||  time"
    )
    rows = [
        ("linops.solve (exact)", 0, ref, t_exact),
        ("linops.lsqr", int(ls.num_iters), ls.value, t_ls),
        ("linops.cg, M = N^-1", int(cg.num_iters), cg.value, t_cg),
        ("linops.cg, no M", int(plain.num_iters), plain.value, t_plain),
        ("pylops cgls", int(pl_its), torch.as_tensor(pl).reshape(ref.shape), t_pl),
        ("scipy lsqr (as_scipy)", int(sp_its), torch.as_tensor(sp).reshape(ref.shape), t_sp),
    ]
    quality = {}
    for name, its, u, t in rows:
        rel = normal_residual(A, DAMP, y, u).item()
        diff = ((u - ref).norm() / ref.norm()).item()
        quality[name] = psnr(u + m, truth).item()
        print(f"{name:<26}  {its:5d}  {quality[name]:5.2f}  {rel:.1e}          {diff:.1e}"
              f"                     {t:6.2f} s")  # fmt: skip

    per_application(N, M, rhs)
    dead_pixels(A, truth, y_obs)
    figure(truth, y_obs, ls.value + m, cg.value + m, bicubic, path)


def per_application(N, M, r, repeats: int = 20) -> None:
    """Cost of one application of N, of M built from the eigenbases, of M as linops.solve."""
    wrapped = solve_as_operator(N)
    err = ((wrapped.apply(r) - M.apply(r)).norm() / M.apply(r).norm()).item()
    print(f"\nM from the eigenbases vs M = linops.solve: relative difference {err:.1e}")
    for name, op in (("N", N), ("M (eigenbases)", M), ("M (linops.solve)", wrapped)):
        op.apply(r)
        t = time.perf_counter()
        for _ in range(repeats):
            op.apply(r)
        print(
            f"  one application of {name:<18} {(time.perf_counter() - t) / repeats * 1e3:6.2f} ms"
        )


def dead_pixels(A, truth, y_obs, fraction: float = 0.1) -> None:
    """Break the structure: a mask ``S`` of dead detector pixels, ``N_S = A^T S A + l^2 I``.

    ``N_S`` is no longer ``a I + b Kronecker``; the exact inverse of the nearby
    ``l^2 I + p A^T A`` (``p`` the fraction of live pixels) preconditions it.
    """
    g = torch.Generator().manual_seed(1)
    mask = (torch.rand(y_obs.shape, dtype=y_obs.dtype, generator=g) >= fraction).to(y_obs.dtype)
    p = mask.mean().item()
    AS = linops.Diagonal(mask) @ A
    m = (y_obs * mask).sum() / mask.sum()
    y = (y_obs - m) * mask
    NS = DAMP**2 * linops.Identity(A.in_shape) + AS.H @ AS
    rhs = AS.apply_adjoint(y)
    print(f"\n{100 * (1 - p):.1f}% dead pixels: CG on N_S = A^T S A + l^2 I to tol {TOL:g}")
    for name, M in (
        ("no M", None),
        ("M = (l^2 I + A^T A)^-1", exact_inverse(A)),
        ("M = (l^2 I + p A^T A)^-1", exact_inverse(A, scale=p)),
    ):  # fmt: skip
        res, t = timed(lambda M=M: linops.cg(NS, rhs, tol=TOL, M=M))
        print(f"  {name:<26} {int(res.num_iters):4d} iterations  PSNR "
              f"{psnr(res.value + m, truth).item():.2f} dB  {t:6.2f} s")  # fmt: skip
    res, t = timed(lambda: linops.lsqr(AS, y, damp=DAMP, tol=TOL))
    print(f"  {'linops.lsqr(S A, y)':<26} {int(res.num_iters):4d} iterations  PSNR "
          f"{psnr(res.value + m, truth).item():.2f} dB  {t:6.2f} s")  # fmt: skip


def figure(truth, y_obs, x_lsqr, x_cg, bicubic, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = truth.shape[-1]
    panels = [
        (truth, "truth (256 x 256)"),
        (y_obs, f"observation (128 x 128)\nbicubic x2: PSNR {psnr(bicubic, truth).item():.2f} dB"),
        (x_lsqr, f"(a) lsqr, damp={DAMP}\nPSNR {psnr(x_lsqr, truth).item():.2f} dB"),
        (x_cg, f"(b) cg on the normal eqs., exact M\nPSNR {psnr(x_cg, truth).item():.2f} dB"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.9), constrained_layout=True)
    for ax, (img, title) in zip(axes, panels, strict=True):
        ax.imshow(img.clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest", extent=(0, n, n, 0))  # fmt: skip
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.1)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
