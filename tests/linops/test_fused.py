"""Fused kernels: the torch specification against independent routes, Triton against the spec.

Tolerances are the classical componentwise rounding bounds (Higham, *Accuracy and Stability of
Numerical Algorithms*, 2nd ed., section 3.5): a computed sum of ``m`` products differs from the
exact one by at most ``gamma_m * sum |terms|`` with ``gamma_m ~ m * eps``. Two routes that
each satisfy it differ by at most twice that, so every check below is
``|actual - expected| <= c * (m + k) * eps * magnitude`` with ``magnitude`` the same expression
evaluated on absolute values. They are worst-case bounds (so the tests cannot flake on a
different summation order) that still catch any indexing or masking mistake, which errs by
O(magnitude). For float32 at the sizes here they amount to about 1e-5 relative.

The Triton tests run the kernels in Triton's CPU interpreter (``TRITON_INTERPRET=1``) or on a
CUDA device, and skip otherwise.
"""

import math
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from linops import _fused
from linops._fused import kron_matvec, lanczos_step, triton_available

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0").lower() in {"1", "true", "on", "yes"}
TRITON_RUNS = triton_available() and (DEVICE == "cuda" or _INTERPRET)
needs_triton = pytest.mark.skipif(
    not TRITON_RUNS,
    reason="needs triton, and a CUDA device or TRITON_INTERPRET=1 for the CPU interpreter",
)
DTYPES = [torch.float32, torch.float64]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _randn(*shape, dtype=torch.float64, g):
    return torch.randn(*shape, dtype=dtype, generator=g).to(DEVICE)


def _assert_within(actual, expected, bound, what):
    """Elementwise ``|actual - expected| <= bound``, reporting the worst ratio."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
    excess = ((actual - expected).abs() / bound.clamp_min(torch.finfo(bound.dtype).tiny)).max()
    assert excess <= 1, f"{what}: error {excess.item():.3g} x the rounding bound"


def _nan_padded(x, pad=5):
    """``x`` as a view into a larger buffer whose other entries are NaN."""
    buf = torch.full([d + pad for d in x.shape], math.nan, dtype=x.dtype, device=x.device)
    view = buf[tuple(slice(0, d) for d in x.shape)]
    view.copy_(x)
    return view


# ----------------------------------------------------------------------------- kron_matvec


def _kron_bound(v, G_h, G_w, a, b, terms):
    """``terms * eps * (|a||v| + |b| |G_h| |V| |G_w|^T)``: the componentwise rounding bound."""
    eps = torch.finfo(v.dtype).eps
    mag = abs(a) * v.abs() + abs(b) * (G_h.abs() @ v.abs() @ G_w.abs().mT)
    return terms * eps * mag


def _kron_case(batch, H, W, dtype, seed):  # noqa: N803
    g = _gen(seed)
    v = _randn(*batch, H, W, dtype=dtype, g=g)
    G_h = _randn(H, H, dtype=dtype, g=g)  # noqa: N806
    G_w = _randn(W, W, dtype=dtype, g=g)  # noqa: N806
    return v, G_h, G_w


@pytest.mark.parametrize("batch", [(), (3,), (2, 2)], ids=str)
@pytest.mark.parametrize("hw", [(1, 1), (5, 7), (6, 1), (4, 9)], ids=str)
def test_kron_matvec_torch_matches_dense_kron(batch, hw):
    H, W = hw  # noqa: N806
    v, G_h, G_w = _kron_case(batch, H, W, torch.float64, seed=H * 10 + W)  # noqa: N806
    a, b = 0.75, -1.3
    y = kron_matvec(v, G_h, G_w, a, b, backend="torch")
    # independent route: the (HW x HW) matrix a I + b kron(G_h, G_w) on row-major vec(v)
    dense = a * torch.eye(H * W, dtype=v.dtype, device=v.device) + b * torch.kron(G_h, G_w)
    ref = (v.reshape(-1, H * W) @ dense.mT).reshape(v.shape)
    # the dense rows sum H W + 1 terms; the factored route H + W + 2
    _assert_within(y, ref, _kron_bound(v, G_h, G_w, a, b, 2 * (H * W + H + W + 3)), "kron vs dense")


@settings(max_examples=20)
@given(
    batch=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    H=st.integers(1, 6),
    W=st.integers(1, 6),
    a=st.floats(-3, 3),
    b=st.floats(-3, 3),
    seed=st.integers(0, 2**16),
)
def test_kron_matvec_torch_property(batch, H, W, a, b, seed):  # noqa: N803
    v, G_h, G_w = _kron_case(batch, H, W, torch.float64, seed)  # noqa: N806
    y = kron_matvec(v, G_h, G_w, a, b, backend="torch")
    dense = a * torch.eye(H * W, dtype=v.dtype, device=v.device) + b * torch.kron(G_h, G_w)
    ref = (v.reshape(-1, H * W) @ dense.mT).reshape(v.shape)
    _assert_within(y, ref, _kron_bound(v, G_h, G_w, a, b, 2 * (H * W + H + W + 3)), "kron")


def test_kron_matvec_auto_on_cpu_is_the_torch_spec_and_differentiable():
    v, G_h, G_w = _kron_case((2,), 3, 4, torch.float64, seed=1)  # noqa: N806
    if DEVICE == "cpu":
        assert torch.equal(
            kron_matvec(v, G_h, G_w, 1.0, -0.4),
            kron_matvec(v, G_h, G_w, 1.0, -0.4, backend="torch"),
        )
    # with grad required, "auto" takes the torch route on any device
    v = v.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: kron_matvec(x, G_h, G_w, 1.0, -0.4), (v,))


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "batch, hw", [((), (8, 8)), ((3,), (13, 7)), ((2, 2), (32, 32)), ((1,), (5, 17))], ids=str
)
def test_kron_matvec_triton_matches_torch(dtype, batch, hw):
    H, W = hw  # noqa: N806
    v, G_h, G_w = _kron_case(batch, H, W, dtype, seed=H + W)  # noqa: N806
    a, b = 1.0, -0.37  # SSD's form: a = 1, b = -rho c^2
    y = kron_matvec(v, G_h, G_w, a, b, backend="triton")
    ref = kron_matvec(v, G_h, G_w, a, b, backend="torch")
    _assert_within(y, ref, _kron_bound(v, G_h, G_w, a, b, 2 * (H + W + 3)), "triton vs torch")


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_kron_matvec_triton_small_tiles_and_strides(dtype):
    # 16-wide tiles on a 40 x 24 image: the kernel loops over row, column, j and k blocks with
    # ragged edges (the GPU tiling). The inputs are transposed views (non-unit inner strides)
    # into NaN-filled buffers, so a load that a mask should have dropped poisons the result.
    from linops import _triton_kernels

    H, W = 40, 24  # noqa: N806
    g = _gen(7)
    v = _nan_padded(_randn(2, W, H, dtype=dtype, g=g)).mT
    G_h = _nan_padded(_randn(H, H, dtype=dtype, g=g))  # noqa: N806
    G_w = _nan_padded(_randn(W, W, dtype=dtype, g=g)).mT  # noqa: N806
    a, b = -0.5, 2.0 / 3.0
    blocks = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "BLOCK_J": 16}
    y = _triton_kernels.kron_matvec(v, G_h, G_w, a, b, blocks=blocks)
    ref = kron_matvec(v, G_h, G_w, a, b, backend="torch")
    _assert_within(y, ref, _kron_bound(v, G_h, G_w, a, b, 2 * (H + W + 3)), "small tiles")
    y = kron_matvec(v, G_h, G_w, a, b, backend="triton")
    _assert_within(y, ref, _kron_bound(v, G_h, G_w, a, b, 2 * (H + W + 3)), "default tiles")


@needs_triton
@settings(max_examples=8)
@given(
    batch=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    H=st.integers(1, 20),
    W=st.integers(1, 20),
    b=st.floats(-2, 2),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_kron_matvec_triton_property(batch, H, W, b, dtype, seed):  # noqa: N803
    v, G_h, G_w = _kron_case(batch, H, W, dtype, seed)  # noqa: N806
    y = kron_matvec(v, G_h, G_w, 1.0, b, backend="triton")
    ref = kron_matvec(v, G_h, G_w, 1.0, b, backend="torch")
    _assert_within(y, ref, _kron_bound(v, G_h, G_w, 1.0, b, 2 * (H + W + 3)), "triton vs torch")


@needs_triton
def test_kron_matvec_triton_float64_scalars_keep_float64_precision():
    # a and b travel to the kernel as float32 (hi, lo) pairs; 1/3 is not a float32 number
    v = torch.ones(1, 2, 2, dtype=torch.float64, device=DEVICE)
    Z = torch.zeros(2, 2, dtype=torch.float64, device=DEVICE)  # noqa: N806
    y = kron_matvec(v, Z, Z, 1.0 / 3.0, 0.0, backend="triton")
    assert (y - 1.0 / 3.0).abs().max() <= 1e-14


@needs_triton
def test_triton_empty_inputs():
    v = torch.zeros(0, 4, 3, device=DEVICE)
    out = kron_matvec(
        v, torch.eye(4, device=DEVICE), torch.eye(3, device=DEVICE), 1.0, 1.0, backend="triton"
    )
    assert out.shape == (0, 4, 3)
    w = torch.zeros(0, 5, device=DEVICE)
    w_new, alpha, beta = lanczos_step(w, w, w, torch.zeros(0, device=DEVICE), backend="triton")
    assert w_new.shape == (0, 5) and alpha.shape == (0,) and beta.shape == (0,)


# ----------------------------------------------------------------------------- lanczos_step


def _lanczos_case(B, n, dtype, seed):  # noqa: N803
    g = _gen(seed)
    w, v, v_prev = (_randn(B, n, dtype=dtype, g=g) for _ in range(3))
    beta_prev = torch.rand(B, dtype=dtype, generator=g).to(DEVICE)
    return w, v, v_prev, beta_prev


def _lanczos_bounds(w, v, v_prev, beta_prev, alpha, beta, terms):
    """Rounding bounds for (w_new, alpha, beta) from two routes summing in different orders."""
    eps = torch.finfo(w.dtype).eps
    dot_mag = (v.abs() * w.abs()).sum(1)
    alpha_tol = terms * eps * dot_mag
    w_tol = alpha_tol[:, None] * v.abs() + 8 * eps * (
        w.abs() + alpha.abs()[:, None] * v.abs() + beta_prev.abs()[:, None] * v_prev.abs()
    )
    beta_tol = terms * eps * beta + torch.linalg.vector_norm(w_tol, dim=1)
    return w_tol, alpha_tol, beta_tol


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_lanczos_step_torch_matches_explicit_formulas(dtype):
    B, n = 3, 11  # noqa: N806
    w, v, v_prev, beta_prev = _lanczos_case(B, n, dtype, seed=3)
    out = lanczos_step(w, v, v_prev, beta_prev, backend="torch")
    assert all(t.dtype == dtype for t in out)
    # independent route: row by row in Python floats (double) with exactly rounded sums
    a_ref, w_ref, b_ref = [], [], []
    for i in range(B):
        wi, vi, pi = (t[i].tolist() for t in (w, v, v_prev))
        bp = float(beta_prev[i])
        alpha = math.fsum(x * y for x, y in zip(vi, wi, strict=True))
        w_new = [x - alpha * y - bp * z for x, y, z in zip(wi, vi, pi, strict=True)]
        a_ref.append(alpha)
        w_ref.append(w_new)
        b_ref.append(math.sqrt(math.fsum(x * x for x in w_new)))
    ref = [torch.tensor(x, dtype=torch.float64, device=DEVICE) for x in (w_ref, a_ref, b_ref)]
    bounds = _lanczos_bounds(w, v, v_prev, beta_prev, ref[1], ref[2], 2 * (n + 4))
    for name, x, y, tol in zip(("w_new", "alpha", "beta"), out, ref, bounds, strict=True):
        _assert_within(x.double(), y, tol.double(), name)


def test_lanczos_step_runs_lanczos_to_the_spectrum():
    # n steps of the recurrence on a symmetric matrix with a chosen spectrum: the tridiagonal
    # matrix has the same eigenvalues (exact arithmetic; well separated, so to ~1e-10 here)
    n, B = 6, 2
    g = _gen(11)
    spectrum = torch.tensor([0.5, 1.0, 2.0, 3.5, 5.0, 8.0], dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=g))  # noqa: N806
    A = (Q * spectrum) @ Q.T  # noqa: N806
    q = torch.randn(B, n, dtype=torch.float64, generator=g)
    q = q / torch.linalg.vector_norm(q, dim=1, keepdim=True)
    q_prev, beta_prev = torch.zeros_like(q), torch.zeros(B, dtype=torch.float64)
    alphas, betas = [], []
    for k in range(n):
        w_new, alpha, beta = lanczos_step(q @ A.T, q, q_prev, beta_prev, backend="torch")
        alphas.append(alpha)
        if k < n - 1:
            betas.append(beta)
        q_prev, q, beta_prev = q, w_new / beta[:, None], beta
    T = torch.diag_embed(torch.stack(alphas, 1))  # noqa: N806
    off = torch.stack(betas, 1)
    T = T + torch.diag_embed(off, offset=1) + torch.diag_embed(off, offset=-1)  # noqa: N806
    torch.testing.assert_close(
        torch.linalg.eigvalsh(T), spectrum.expand(B, n), rtol=1e-10, atol=1e-10
    )


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B, n", [(1, 1), (2, 33), (3, 101), (5, 257)], ids=str)
def test_lanczos_step_triton_matches_torch(dtype, B, n):  # noqa: N803
    w, v, v_prev, beta_prev = _lanczos_case(B, n, dtype, seed=B * 1000 + n)
    out = lanczos_step(w, v, v_prev, beta_prev, backend="triton")
    ref = lanczos_step(w, v, v_prev, beta_prev, backend="torch")
    w_tol, a_tol, b_tol = _lanczos_bounds(w, v, v_prev, beta_prev, ref[1], ref[2], 2 * (n + 4))
    for name, x, y, tol in zip(
        ("w_new", "alpha", "beta"), out, ref, (w_tol, a_tol, b_tol), strict=True
    ):
        _assert_within(x, y, tol, name)


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_lanczos_step_triton_multi_block_and_strides(dtype):
    # block 16 < n: the two-pass path (the GPU route for long rows) with a ragged last block,
    # on views into NaN-filled buffers (row stride != n; a load past a mask poisons the
    # result) and a strided beta_prev
    from linops import _triton_kernels

    B, n = 3, 45  # noqa: N806
    g = _gen(5)
    w, v, v_prev = (_nan_padded(_randn(B, n, dtype=dtype, g=g)) for _ in range(3))
    beta_prev = torch.rand(2 * B, dtype=dtype, generator=g).to(DEVICE)[::2]
    ref = lanczos_step(w, v, v_prev, beta_prev, backend="torch")
    w_tol, a_tol, b_tol = _lanczos_bounds(w, v, v_prev, beta_prev, ref[1], ref[2], 2 * (n + 4))
    for out in (
        _triton_kernels.lanczos_step(w, v, v_prev, beta_prev, block=16),
        lanczos_step(w, v, v_prev, beta_prev, backend="triton"),
    ):
        for name, x, y, tol in zip(
            ("w_new", "alpha", "beta"), out, ref, (w_tol, a_tol, b_tol), strict=True
        ):
            _assert_within(x, y, tol, name)


# ----------------------------------------------------------------------------- errors


def _kron_args():
    g = _gen(0)
    return (
        torch.randn(2, 4, 3, dtype=torch.float64, generator=g),
        torch.randn(4, 4, dtype=torch.float64, generator=g),
        torch.randn(3, 3, dtype=torch.float64, generator=g),
    )


def test_kron_matvec_rejects_bad_inputs():
    v, G_h, G_w = _kron_args()  # noqa: N806
    with pytest.raises(TypeError, match=r"kron_matvec: expected v to be a torch.Tensor, got list"):
        kron_matvec([1.0], G_h, G_w, 1.0, 1.0)
    with pytest.raises(
        ValueError, match=r"kron_matvec: expected v with shape \(\.\.\., H, W\), got \(5,\)"
    ):
        kron_matvec(torch.zeros(5, dtype=torch.float64), G_h, G_w, 1.0, 1.0)
    with pytest.raises(
        ValueError,
        match=r"expected G_h with shape \(4, 4\) to match v of shape \(2, 4, 3\), got \(3, 3\)",
    ):
        kron_matvec(v, G_w, G_w, 1.0, 1.0)
    with pytest.raises(
        ValueError,
        match=r"expected G_w with shape \(3, 3\) to match v of shape \(2, 4, 3\), got \(3, 4\)",
    ):
        kron_matvec(v, G_h, G_w[:, :1].expand(3, 4), 1.0, 1.0)
    with pytest.raises(
        ValueError, match=r"expected v with dtype torch.float32 or torch.float64, got torch.int64"
    ):
        kron_matvec(v.long(), G_h, G_w, 1.0, 1.0)
    with pytest.raises(
        ValueError,
        match=r"expected G_h with dtype torch.float32 or torch.float64, got torch.float16",
    ):
        kron_matvec(v, G_h.half(), G_w, 1.0, 1.0)
    with pytest.raises(
        ValueError,
        match=r"expected G_w with dtype torch.float64 \(the dtype of v\), got torch.float32",
    ):
        kron_matvec(v, G_h, G_w.float(), 1.0, 1.0)
    with pytest.raises(ValueError, match=r"expected G_h on cpu \(the device of v\), got meta"):
        kron_matvec(v, G_h.to("meta"), G_w, 1.0, 1.0)
    with pytest.raises(
        TypeError, match=r"expected b to be a real Python number, got Tensor. Pass float\(b\)"
    ):
        kron_matvec(v, G_h, G_w, 1.0, torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"kron_matvec: expected a finite a, got nan"):
        kron_matvec(v, G_h, G_w, float("nan"), 1.0)
    with pytest.raises(
        ValueError, match=r"kron_matvec: expected backend 'auto', 'torch' or 'triton', got 'cuda'"
    ):
        kron_matvec(v, G_h, G_w, 1.0, 1.0, backend="cuda")


def test_lanczos_step_rejects_bad_inputs():
    w = torch.zeros(2, 5, dtype=torch.float64)
    bp = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"lanczos_step: expected w with 2 dimensions, got shape \(5,\)"
    ):
        lanczos_step(w[0], w[0], w[0], bp)
    with pytest.raises(
        ValueError,
        match=r"lanczos_step: expected v_prev with shape \(2, 5\) \(the shape of w\), got \(2, 4\)",
    ):
        lanczos_step(w, w, w[:, :4], bp)
    with pytest.raises(
        ValueError,
        match=r"lanczos_step: expected beta_prev with shape \(2,\) \(one per row of w\), got \(2, 1\)",
    ):
        lanczos_step(w, w, w, bp[:, None])
    with pytest.raises(
        ValueError,
        match=r"lanczos_step: expected v with dtype torch.float32 or torch.float64, got torch.int32",
    ):
        lanczos_step(w, w.int(), w, bp)
    with pytest.raises(
        ValueError,
        match=r"lanczos_step: expected beta_prev with dtype torch.float64 \(the dtype of w\), got torch.float32",
    ):
        lanczos_step(w, w, w, bp.float())
    with pytest.raises(
        TypeError, match=r"lanczos_step: expected beta_prev to be a torch.Tensor, got float"
    ):
        lanczos_step(w, w, w, 0.0)
    with pytest.raises(
        ValueError, match=r"lanczos_step: expected backend 'auto', 'torch' or 'triton', got None"
    ):
        lanczos_step(w, w, w, bp, backend=None)


def test_backend_triton_without_triton_says_how_to_install(monkeypatch):
    monkeypatch.setattr(_fused, "triton_available", lambda: False)
    v, G_h, G_w = _kron_args()  # noqa: N806
    with pytest.raises(
        RuntimeError,
        match=r"kron_matvec: backend='triton' needs the triton package: pip install \"lineardiff\[triton\]\"",
    ):
        kron_matvec(v, G_h, G_w, 1.0, 1.0, backend="triton")
    w, bp = torch.zeros(2, 5), torch.zeros(2)
    with pytest.raises(
        RuntimeError, match=r"lanczos_step: backend='triton' needs the triton package"
    ):
        lanczos_step(w, w, w, bp, backend="triton")
    # "auto" falls back to the specification
    assert torch.equal(
        kron_matvec(v, G_h, G_w, 1.0, 1.0), kron_matvec(v, G_h, G_w, 1.0, 1.0, backend="torch")
    )


def test_backend_triton_on_cpu_without_interpreter(monkeypatch):
    # compiled (not interpreted) kernels need CUDA tensors; emulate that set-up on any machine
    class Compiled:
        INTERPRETED = False

    monkeypatch.setattr(_fused, "triton_available", lambda: True)
    monkeypatch.setattr(_fused, "_kernels", lambda: Compiled)
    v, G_h, G_w = _kron_args()  # noqa: N806
    with pytest.raises(
        RuntimeError,
        match=r"kron_matvec: backend='triton' expected CUDA tensors, got tensors on cpu\. .*TRITON_INTERPRET=1",
    ):
        kron_matvec(v, G_h, G_w, 1.0, 1.0, backend="triton")
    assert _fused._resolve_backend("f", "auto", (v,)) == "torch"


def test_backend_triton_rejects_inputs_requiring_grad(monkeypatch):
    monkeypatch.setattr(_fused, "triton_available", lambda: True)
    v, G_h, G_w = _kron_args()  # noqa: N806
    with pytest.raises(
        ValueError, match=r"kron_matvec: backend='triton' expected inputs that do not require grad"
    ):
        kron_matvec(v, G_h.requires_grad_(True), G_w, 1.0, 1.0, backend="triton")

    class Interpreted:
        INTERPRETED = True

    monkeypatch.setattr(_fused, "_kernels", lambda: Interpreted)
    with torch.no_grad():  # no graph is recorded, so nothing needs a backward: allowed
        assert _fused._resolve_backend("f", "triton", (G_h,)) == "triton"


@needs_triton
def test_backend_triton_rejects_scalars_beyond_float32():
    v, G_h, G_w = (t.to(DEVICE) for t in _kron_args())  # noqa: N806
    with pytest.raises(
        ValueError,
        match=r"kron_matvec: backend='triton' expected \|a\| and \|b\| at most 3\.403e\+38",
    ):
        kron_matvec(v, G_h, G_w, 1.0, 1e300, backend="triton")
