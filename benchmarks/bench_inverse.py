"""Tikhonov deblurring and 2x super-resolution of 16 photographs: linops, PyLops and SciPy.

The problem (also the one of ``docs/inverse_problems.rst``, there at 256 px): a photograph
``x`` (scikit-image's sample images, grayscale, in [0, 1]) is blurred by a Gaussian of
standard deviation ``BLUR * n / 256`` pixels (``linops.GaussianBlur``, reflecting edges),
downsampled 2x (``linops.Resize``, antialiased bilinear) and given white noise of standard
deviation ``NOISE``: ``y = A x + e``, ``A = R B``. The estimate is Tikhonov's about the mean
``m`` of ``y`` (``A`` maps constants to themselves)::

    x = m + argmin_u ||A u - (y - m)||^2 + DAMP^2 ||u||^2,

i.e. ``u`` solves the normal equations ``N u = A^T (y - m)``, ``N = A^T A + DAMP^2 I``.

Every solver runs to the same accuracy: the relative normal-equation residual
``||A^T (y - m) - N u|| / ||A^T (y - m)||`` of each of the 16 images at most ``TARGET``
(each test asserts it). Each stops by its own test, set to reach it:

- CG on ``N`` (``linops.cg``) and PyLops' ``cgls`` stop on exactly that residual (the
  recurrence one; ``cgls``' absolute ``tol`` is on its square, so it gets
  ``(TARGET ||A^T (y - m)||)^2`` per image);
- the three LSQRs (ours, PyLops', SciPy's: Paige and Saunders' algorithm; ours and SciPy's
  take the same iterations, PyLops' stops a few earlier) share one ``atol = btol``, the
  largest of ``TARGET / 2^k`` for which our LSQR meets ``TARGET`` (found before timing).

Rows, all float64 on the CPU:

- ``test_scipy_lsqr`` (the baseline): ``scipy.sparse.linalg.lsqr`` on
  ``linops.as_scipy(A)``, one image after the other;
- ``test_pylops_lsqr``, ``test_pylops_cgls``: PyLops' solvers on PyLops' own operators
  holding the same 1-D matrices (``A = A_h (x) A_w``, ``A_h = R_h B_h``; see
  :func:`pylops_operator`), one image after the other;
- ``test_linops_lsqr``: ``linops.lsqr(A, y, damp=DAMP)``, all 16 images in one batched call,
  ``A = R @ B`` as built; ``test_linops_lsqr_kron`` the same with ``A`` folded into one
  ``linops.Kronecker(A_h, A_w)`` (the representation PyLops gets);
- ``test_linops_cg``: ``linops.cg`` on ``N``, no preconditioner (CGLS, batched);
- ``test_linops_cg_exact_M``: ``linops.cg`` on ``N`` with ``M = N^{-1}`` built from the
  eigendecompositions of the 1-D factors (:func:`exact_inverse`, built inside the timed
  call; CG then takes one iteration);
- ``test_linops_solve_exact``: ``linops.solve(N, A^T (y - m))`` itself.

Every timed call is warmed up once (numba's banded kernels, the eigendecomposition cache of
the exact route), then the median of ``LINEARDIFF_BENCH_ROUNDS`` (default 3) runs is taken.
torch, NumPy's BLAS and numba all run on ``LINEARDIFF_BENCH_THREADS`` threads, here by
default one (:func:`same_threads`).

Run::

    python -m pytest benchmarks/bench_inverse.py --benchmark-enable -s

Needs the ``bench`` extra (scikit-image for the photographs, PyLops); the figure of the docs
page is made by ``python benchmarks/inverse_figure.py``.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

import linops

skimage_data = pytest.importorskip("skimage.data")
skimage_color = pytest.importorskip("skimage.color")
pylops = pytest.importorskip("pylops")
pylops_basic = pytest.importorskip("pylops.optimization.basic")

# sample images shipped inside the scikit-image wheel (nothing is downloaded)
PHOTOS = (
    "camera", "astronaut", "coffee", "chelsea", "moon", "coins", "page", "text",
    "brick", "grass", "gravel", "rocket", "hubble_deep_field", "retina",
    "immunohistochemistry", "cell",
)  # fmt: skip
BLUR = 1.5  # Gaussian blur std in pixels of a 256 px image (scaled with the size)
NOISE = 0.005  # noise std, images in [0, 1]
DAMP = 0.05  # Tikhonov's lambda: near the PSNR optimum and Morozov's discrepancy (docs)
TARGET = 1e-6  # relative normal-equation residual every solver reaches
SIZE = 128  # photographs 128 x 128, observations 64 x 64
ROUNDS = int(os.environ.get("LINEARDIFF_BENCH_ROUNDS", "3"))
GROUP = f"Tikhonov blur+2x SR, 16 photos {SIZE}->{SIZE // 2}"
DTYPE = torch.float64


# ------------------------------------------------------------------- the problem
def photos(n: int, names=PHOTOS) -> torch.Tensor:
    """scikit-image's sample photographs: grayscale, centre square, area-resized to ``n``."""
    out = []
    for name in names:
        img = np.asarray(getattr(skimage_data, name)())
        img = img / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
        if img.ndim == 3:
            img = skimage_color.rgb2gray(img[..., :3])
        h, w = img.shape
        s = min(h, w)
        img = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        t = torch.as_tensor(np.ascontiguousarray(img), dtype=DTYPE)[None, None]
        out.append(F.interpolate(t, size=(n, n), mode="area")[0, 0])
    return torch.stack(out)


def forward(n: int) -> linops.LinearOperator:
    """``A = R B``: Gaussian blur, then 2x antialiased bilinear downsampling."""
    B = linops.GaussianBlur((n, n), BLUR * n / 256)
    R = linops.Resize((n, n), (n // 2, n // 2))
    return R @ B


def observe(A: linops.LinearOperator, x: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    clean = A.apply(x)
    return clean + NOISE * torch.randn(clean.shape, dtype=DTYPE, generator=g)


def centre(y: torch.Tensor):
    """``(y - m, m)`` with ``m`` the mean of each image, shaped to broadcast."""
    m = y.mean(dim=(-2, -1), keepdim=True)
    return y - m, m


def normal_operator(A: linops.LinearOperator, damp: float = DAMP) -> linops.LinearOperator:
    """``N = A^T A + damp^2 I``: ``a I + b (G_h (x) G_w)``, which linops.solve inverts exactly."""
    return damp**2 * linops.Identity(A.in_shape) + A.H @ A


def exact_inverse(A: linops.LinearOperator, damp: float = DAMP, scale: float = 1.0):
    """``(damp^2 I + scale A^T A)^{-1}`` for ``A = A_h (x) A_w``, as an explicit operator.

    With ``A_h^T A_h = U_h diag(mu_h) U_h^T`` and likewise for ``w``, the operator is
    ``E^T diag(1 / (damp^2 + scale mu_h mu_w^T)) E``, ``E = U_h^T (x) U_w^T``: two small
    ``eigh`` once, then four matrix products and a division per application (what
    ``linops.solve``'s exact route does, without re-detecting the structure and checking
    the residual at every call).
    """
    A_h, A_w = kronecker_factors(A)
    mu_h, U_h = torch.linalg.eigh(A_h.T @ A_h)
    mu_w, U_w = torch.linalg.eigh(A_w.T @ A_w)
    E = linops.Kronecker(U_h.T, U_w.T)
    return E.H @ linops.Diagonal(1 / (damp**2 + scale * mu_h[:, None] * mu_w[None, :])) @ E


def solve_as_operator(N: linops.LinearOperator) -> linops.LinearOperator:
    """``N^{-1}`` as an operator whose every application is one exact ``linops.solve``."""

    def apply(r):
        return linops.solve(N, r, method="exact").value

    # N is symmetric, so is its inverse: the adjoint is the same solve
    return linops.FunctionOperator(apply, N.in_shape, N.in_shape, adjoint=apply)


def kronecker_factors(A: linops.LinearOperator):
    """``(A_h, A_w)`` with ``A = A_h (x) A_w`` for ``A = R @ B`` of :func:`forward`."""
    R, B = A.operators
    r_h, r_w = R.factors(dtype=DTYPE)
    b_h, b_w = B.factor_matrices(dtype=DTYPE)
    return r_h @ b_h, r_w @ b_w


def pylops_operator(A: linops.LinearOperator):
    """``A`` built from PyLops' own operators: ``Y = A_h X A_w^T`` as a matrix product along
    the first axis, a transpose, the second product and a transpose back (PyLops' idiom for
    a matrix along an axis; ``pylops.Kronecker`` computes the same about ten times slower
    here: its factors' ``matmat`` is PyLops' default, one ``matvec`` per column)."""
    A_h, A_w = (f.numpy() for f in kronecker_factors(A))
    w = A.in_shape[-1]
    h2, w2 = A.out_shape
    along_h = pylops.MatrixMult(A_h, otherdims=(w,))  # (h, w) -> (h2, w)
    swap = pylops.Transpose((h2, w), axes=(1, 0))  # -> (w, h2)
    along_w = pylops.MatrixMult(A_w, otherdims=(h2,))  # -> (w2, h2)
    back = pylops.Transpose((w2, h2), axes=(1, 0))  # -> (h2, w2)
    return back @ along_w @ swap @ along_h


def normal_residual(A, damp, y, u) -> torch.Tensor:
    """``||A^T y - N u|| / ||A^T y||`` per image (``y`` and ``u`` batched, any array type)."""
    y = torch.as_tensor(np.asarray(y)).reshape(-1, *A.out_shape)
    u = torch.as_tensor(np.asarray(u)).reshape(-1, *A.in_shape)
    rhs = A.apply_adjoint(y)
    r = rhs - A.apply_adjoint(A.apply(u)) - damp**2 * u
    return r.flatten(1).norm(dim=1) / rhs.flatten(1).norm(dim=1)


def psnr(x: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB for images in [0, 1], per image."""
    mse = ((x - truth) ** 2).flatten(-2).mean(-1)
    return -10 * torch.log10(mse)


def calibrate_lsqr_tol(A, y, damp, target) -> float:
    """The largest ``target / 2^k`` with which LSQR (atol = btol) reaches ``target``."""
    tol = target
    for _ in range(12):
        res = linops.lsqr(A, y, damp=damp, tol=tol)
        if normal_residual(A, damp, y, res.value).max() <= target:
            return tol
        tol /= 2
    raise AssertionError(f"LSQR does not reach a normal residual {target:g} down to tol {tol:g}")


@contextlib.contextmanager
def same_threads(n: int | None = None):
    """torch, NumPy's BLAS (PyLops, SciPy) and numba's banded kernels (linops) on ``n``
    threads (default: torch's current number). numba's default, one thread per core, and
    torch's intra-op threads are many times slower on a busy machine."""
    n = torch.get_num_threads() if n is None else n
    try:
        import numba
    except ImportError:  # linops then uses matrix products only
        numba = None
    before = torch.get_num_threads(), numba.get_num_threads() if numba is not None else None
    torch.set_num_threads(n)
    if numba is not None:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before[0])
        if numba is not None:
            numba.set_num_threads(before[1])


# ------------------------------------------------------------------- benchmarks
@pytest.fixture(scope="module", autouse=True)
def _threads():
    # one thread unless LINEARDIFF_BENCH_THREADS says otherwise (conftest's default is 2)
    with same_threads(int(os.environ.get("LINEARDIFF_BENCH_THREADS", "1"))):
        yield


@pytest.fixture(scope="module")
def problem():
    A = forward(SIZE)
    truth = photos(SIZE)
    y, m = centre(observe(A, truth))
    N = normal_operator(A)
    rhs = A.apply_adjoint(y)
    A_h, A_w = kronecker_factors(A)
    return {
        "A": A,
        "truth": truth,
        "m": m,
        "y": y,
        "N": N,
        "rhs": rhs,
        "K": linops.Kronecker(A_h, A_w),
        "pylops": pylops_operator(A),
        "scipy": linops.as_scipy(A),
        "y_np": y.reshape(y.shape[0], -1).numpy(),
        "lsqr_tol": calibrate_lsqr_tol(A, y, DAMP, TARGET),
    }


def _run(benchmark, name, fn, problem, iterations):
    """Time ``fn`` (returns the batch of solutions), check the accuracy, record it."""
    benchmark.group = GROUP
    benchmark.extra_info["label"] = name
    if name != "scipy lsqr":
        benchmark.extra_info["baseline"] = "test_scipy_lsqr"
    u = benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    u = torch.as_tensor(np.asarray(u)).reshape(problem["truth"].shape)
    rel = normal_residual(problem["A"], DAMP, problem["y"], u).max().item()
    quality = psnr(u + problem["m"], problem["truth"]).mean().item()
    its = iterations()
    benchmark.extra_info.update(normal_residual=rel, iterations=its, psnr=quality)
    print(f"\n{name:<28} residual {rel:.2e}  iterations {its}  mean PSNR {quality:.2f} dB")
    assert rel <= TARGET
    return u


def test_scipy_lsqr(benchmark, problem):
    S, Y, tol = problem["scipy"], problem["y_np"], problem["lsqr_tol"]
    its = []

    def solve():
        its.clear()
        out = []
        for y in Y:
            sol = spla.lsqr(S, y, damp=DAMP, atol=tol, btol=tol, iter_lim=10_000)
            out.append(sol[0])
            its.append(int(sol[2]))
        return np.stack(out)

    _run(benchmark, "scipy lsqr", solve, problem, lambda: its)


def test_pylops_lsqr(benchmark, problem):
    P, Y, tol = problem["pylops"], problem["y_np"], problem["lsqr_tol"]
    its = []

    def solve():
        its.clear()
        out = []
        for y in Y:
            sol = pylops_basic.lsqr(
                P, y, damp=DAMP, atol=tol, btol=tol, niter=10_000, calc_var=False
            )
            out.append(sol[0])
            its.append(int(sol[2]))
        return np.stack(out)

    _run(benchmark, "pylops lsqr", solve, problem, lambda: its)


def test_pylops_cgls(benchmark, problem):
    P, Y = problem["pylops"], problem["y_np"]
    # cgls stops when ||A^T s - damp^2 x||^2 < tol (absolute, squared)
    tols = ((TARGET * problem["rhs"].flatten(1).norm(dim=1)) ** 2).tolist()
    its = []

    def solve():
        its.clear()
        out = []
        for y, tol in zip(Y, tols, strict=True):
            sol = pylops_basic.cgls(P, y, damp=DAMP, niter=10_000, tol=tol)
            out.append(sol[0])
            its.append(int(sol[2]))
        return np.stack(out)

    _run(benchmark, "pylops cgls", solve, problem, lambda: its)


def _linops_row(benchmark, problem, name, call):
    last = {}

    def solve():
        last["res"] = call()
        return last["res"].value

    _run(benchmark, name, solve, problem, lambda: last["res"].num_iters.tolist())


def test_linops_lsqr(benchmark, problem):
    A, y, tol = problem["A"], problem["y"], problem["lsqr_tol"]
    _linops_row(
        benchmark, problem, "linops lsqr (R @ B)", lambda: linops.lsqr(A, y, damp=DAMP, tol=tol)
    )


def test_linops_lsqr_kron(benchmark, problem):
    K, y, tol = problem["K"], problem["y"], problem["lsqr_tol"]
    _linops_row(
        benchmark, problem, "linops lsqr (Kronecker)", lambda: linops.lsqr(K, y, damp=DAMP, tol=tol)
    )


def test_linops_cg(benchmark, problem):
    N, rhs = problem["N"], problem["rhs"]
    _linops_row(benchmark, problem, "linops cg, no M", lambda: linops.cg(N, rhs, tol=TARGET))


def test_linops_cg_exact_M(benchmark, problem):
    N, rhs = problem["N"], problem["rhs"]
    A = problem["A"]
    _linops_row(
        benchmark,
        problem,
        "linops cg, M = N^-1",
        lambda: linops.cg(N, rhs, tol=TARGET, M=exact_inverse(A)),
    )


def test_linops_solve_exact(benchmark, problem):
    N, rhs = problem["N"], problem["rhs"]
    res = linops.solve(N, rhs)
    assert res.method == "kronecker"
    _linops_row(benchmark, problem, "linops solve (exact)", lambda: linops.solve(N, rhs))


def test_solutions_agree(problem):
    """The same problem everywhere: PyLops' operator is ``A``, and LSQR's solution is the
    exact one to the accuracy that ``TARGET`` guarantees."""
    A, y, N, rhs = problem["A"], problem["y"], problem["N"], problem["rhs"]
    u = torch.randn(2, *A.in_shape, dtype=DTYPE, generator=torch.Generator().manual_seed(1))
    ours = A.apply(u).reshape(2, -1).numpy()
    theirs = np.stack([problem["pylops"].matvec(v) for v in u.reshape(2, -1).numpy()])
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-12)
    exact = linops.solve(N, rhs).value
    ls = linops.lsqr(A, y, damp=DAMP, tol=problem["lsqr_tol"]).value
    # ||u - u*|| / ||u*|| <= cond(N) TARGET, cond(N) = (||A||^2 + DAMP^2) / DAMP^2
    A_h, A_w = kronecker_factors(A)
    norm_a = (torch.linalg.matrix_norm(A_h, 2) * torch.linalg.matrix_norm(A_w, 2)).item()
    bound = (norm_a**2 + DAMP**2) / DAMP**2 * TARGET
    err = (ls - exact).flatten(1).norm(dim=1) / exact.flatten(1).norm(dim=1)
    assert err.max() <= bound
