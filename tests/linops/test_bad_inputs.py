"""Bad input to linops, one table: a clear error naming the argument (issue 15).

Every row is ``(call, exception, message regex)``: operators (constructors, algebra,
``apply``/``apply_adjoint`` with a wrong shape, dtype, device, half precision, ``meta``),
the DCT functions, the spectral estimators, :func:`linops.funm` and the solvers
(``cg``, ``minres``, ``lsqr``, ``solve``). The policy: a wrong kind of value is a
``TypeError`` or ``ValueError`` whose message reads ``where: expected X, got Y``; operators
stay NaN-transparent in ``apply`` (like torch), but solvers and matrix functions refuse
NaN and inf in their right-hand sides.
"""

import numpy as np
import pytest
import torch
from error_tables import raises_test

import linops as L

F64 = torch.float64
NAN = float("nan")


def _dense():
    return L.Dense(torch.eye(4, dtype=F64) * 2 + 0.1)


def _diag():
    return L.Diagonal(torch.arange(1.0, 6.0, dtype=F64))


def _b(*shape, dtype=F64, device="cpu"):
    return torch.ones(*(shape or (4,)), dtype=dtype, device=device)


def _tall():
    return L.Dense(torch.ones(3, 2, dtype=F64))


R = L.Resize((8, 8), (4, 4))

ERRORS = [
    # ----------------------------------------------------------- operator constructors
    (lambda: L.Identity(0), ValueError, r"Identity: in_shape: expected a sequence of positive ints, got \(0,\)"),
    (lambda: L.Identity(2.5), TypeError, r"Identity: in_shape: expected a sequence of positive ints, got 2.5"),
    (lambda: L.ScaledIdentity((4,), NAN), ValueError, r"ScaledIdentity: expected a finite scale, got nan"),
    (lambda: L.ScaledIdentity((4,), "2"), TypeError, r"ScaledIdentity: expected a real or complex scalar scale, got '2'"),
    (lambda: L.Diagonal(np.ones(3)), TypeError, r"Diagonal: expected diag to be a torch.Tensor, got ndarray"),
    (lambda: L.Diagonal(torch.ones(3, dtype=torch.long)), ValueError, r"Diagonal: expected diag with a floating or complex dtype, got torch.int64"),
    (lambda: L.Diagonal(torch.ones(3, device="meta")), ValueError, r"Diagonal: expected diag with data, got a tensor on the meta device"),
    (lambda: L.Dense(torch.ones(4)), ValueError, r"Dense: expected a 2-D matrix, got shape \(4,\)"),
    (lambda: L.Dense(torch.eye(3, device="meta")), ValueError, r"Dense: expected matrix with data, got a tensor on the meta device"),
    (lambda: L.Kronecker(torch.eye(3, device="meta"), torch.eye(3)), ValueError, r"Kronecker: A_h: expected a matrix with data, got a tensor on the meta device"),
    (lambda: L.BasisDiagonal(L.DCT2((4, 4)), torch.ones(4, 4, device="meta")), ValueError, r"BasisDiagonal: expected diag with data"),
    (lambda: L.Resize((8, 8), (4, 4), mode="cubic"), ValueError, r"Resize: expected mode in \('bilinear', .*\), got 'cubic'"),
    (lambda: L.GaussianBlur((8, 8), -1.0), ValueError, r"GaussianBlur: expected sigma >= 0 as a float or \(sigma_h, sigma_w\), got -1.0"),
    (lambda: L.GaussianBlur((8, 8), 1.0, truncate=float("inf")), ValueError, r"GaussianBlur: expected a finite truncate, got inf"),
    (lambda: L.gaussian_blur_matrix(0, 1.0), ValueError, r"gaussian_blur_matrix: expected n >= 1 \(an int\), got 0"),
    (lambda: L.gaussian_blur_matrix(4, 1.0, dtype=torch.long), TypeError, r"gaussian_blur_matrix: expected dtype in \(torch.float32, .*\), got torch.int64"),
    (lambda: L.FunctionOperator(3, (4,), (4,)), TypeError, r"FunctionOperator: expected fn to be callable, got int"),
    # ----------------------------------------------------------------------- algebra
    (lambda: L.Scaled(_diag(), "2"), TypeError, r"Scaled: expected scale as a real or complex number, got '2'"),
    (lambda: _diag() * NAN, ValueError, r"Scaled: expected a finite scale, got nan"),
    (lambda: _diag() / 0, ValueError, r"Diagonal / 0: expected a nonzero divisor, got 0"),
    (lambda: _diag() + 1.0, TypeError, r"Diagonal \+ float: expected a LinearOperator on both sides of \+; for a shift write"),
    (lambda: _diag() * torch.ones(2), TypeError, r"Diagonal \* Tensor: expected a scalar \(a number or a 0-d tensor\), got a tensor of shape \(2,\)"),
    (lambda: _diag() @ _dense(), ValueError, r"Composed: expected Dense to have out_shape equal to Diagonal.in_shape \(5,\), got \(4,\)"),
    (lambda: _diag() + _dense(), ValueError, r"Sum: expected operators of shape \(5,\) -> \(5,\), got Dense"),
    # ---------------------------------------------------------------- apply / adjoint
    (lambda: _diag().apply(np.ones(5)), TypeError, r"Diagonal.apply: expected x to be a torch.Tensor, got ndarray"),
    (lambda: _diag().apply(torch.ones(5, dtype=torch.long)), ValueError, r"Diagonal.apply: expected x with a floating or complex dtype, got torch.int64"),
    (lambda: _diag().apply(torch.ones(4, dtype=F64)), ValueError, r"Diagonal.apply: expected x with trailing shape \(5,\), got \(4,\)"),
    (lambda: R.apply(torch.ones(1, 8, 8, dtype=torch.float16)), TypeError, r"Resize.apply: expected x as float32, float64, complex64 or complex128, got torch.float16"),
    (lambda: L.FFT2((8, 8)).apply(torch.ones(8, 8, dtype=torch.bfloat16)), TypeError, r"FFT2.apply: expected x as float32, .* got torch.bfloat16"),
    (lambda: R.apply(torch.ones(1, 8, 8, device="meta")), ValueError, r"Resize.apply: expected x with data, got a tensor on the meta device"),
    (lambda: R.apply_adjoint(torch.ones(1, 8, 8)), ValueError, r"Resize.apply_adjoint: expected y with trailing shape \(4, 4\), got \(1, 8, 8\)"),
    (lambda: _diag().to_dense(chunk_size=0), ValueError, r"Diagonal.to_dense: expected chunk_size >= 1 \(an int\), got 0"),
    (lambda: _diag().to_dense(device="cuda:99"), ValueError, r"Diagonal.to_dense: expected an available device, got 'cuda:99'"),
    # ------------------------------------------------------------ DCT, pinv, scipy
    (lambda: L.dct(torch.ones(4, dtype=torch.long)), TypeError, r"dct: expected a real float32 or float64 x, got torch.int64"),
    (lambda: L.dct(torch.ones(4, dtype=torch.complex64)), TypeError, r"dct: expected a real float32 or float64 x, got torch.complex64 \(transform the real and imaginary parts\)"),
    (lambda: L.dct(torch.ones(4), dim=5), ValueError, r"dct: expected dim in \[-1, 0\] for x of shape \(4,\), got 5"),
    (lambda: L.dct2(torch.ones(4)), ValueError, r"dct2: expected x with at least two axes, got shape \(4,\)"),
    (lambda: L.idct2(torch.ones(4, 4, device="meta")), ValueError, r"idct2: expected x with data, got a tensor on the meta device"),
    (lambda: L.pinv(R, rcond=-1.0), ValueError, r"pinv: expected rcond in \[0, 1\) \(a real number\), got -1.0"),
    (lambda: L.as_scipy(_diag(), dtype=np.int64), TypeError, r"as_scipy: expected dtype float32, float64, complex64 or complex128, got int64"),
    # --------------------------------------------------------- spectral estimators
    (lambda: L.lambda_max(_diag(), tol=True), ValueError, r"lambda_max: expected tol > 0, got True"),
    (lambda: L.lambda_max(_diag(), dtype=torch.long), TypeError, r"lambda_max: expected dtype in \(torch.float32, torch.float64\), got torch.int64"),
    (lambda: L.lambda_max(_diag(), device="meta"), ValueError, r"lambda_max: expected an available device, got 'meta'"),
    (lambda: L.spectral_norm(R, generator=1), TypeError, r"spectral_norm: expected generator as a torch.Generator or None, got int"),
    (lambda: L.spectral_bounds(R), ValueError, r"spectral_bounds: expected a square operator, got in_shape \(8, 8\) and out_shape \(4, 4\)"),
    # ------------------------------------------------------------------------- funm
    (lambda: L.funm("cos", _diag(), _b(5)), ValueError, r"funm: expected f in \('sqrt', 'invsqrt', 'exp', 'log'\) or a callable, got 'cos'"),
    (lambda: L.funm(3, _diag(), _b(5)), TypeError, r"funm: expected f to be a name or a callable, got int"),
    (lambda: L.funm("exp", torch.eye(5), _b(5)), TypeError, r"funm\('exp'\): expected A to be a LinearOperator, got Tensor"),
    (lambda: L.funm("exp", _diag(), _b(5), method="fast"), ValueError, r"funm\('exp'\): expected method in \('auto', 'lanczos', 'exact', 'dense'\), got 'fast'"),
    (lambda: L.funm("exp", _diag(), _b(5), tol=0), ValueError, r"funm\('exp'\): expected tol > 0 \(a finite real number\), got 0"),
    (lambda: L.funm("exp", _diag(), _b(5), tol=float("inf")), ValueError, r"funm\('exp'\): expected tol > 0 \(a finite real number\), got inf"),
    (lambda: L.funm("exp", _diag(), _b(5), tol=True), ValueError, r"funm\('exp'\): expected tol > 0 \(a finite real number\), got True"),
    (lambda: L.funm("exp", _diag(), _b(5), max_iters=0), ValueError, r"funm\('exp'\): expected max_iters >= 1 \(an int\) or None, got 0"),
    (lambda: L.funm("exp", _diag(), _b(5), max_iters=True), ValueError, r"funm\('exp'\): expected max_iters >= 1 \(an int\) or None, got True"),
    (lambda: L.funm("exp", _diag(), _b(5), throw="yes"), TypeError, r"funm\('exp'\): expected throw to be a bool, got str"),
    (lambda: L.funm("exp", _diag(), _b(5), backend="cuda"), ValueError, r"funm\('exp'\): expected backend in \('auto', 'torch', 'triton'\), got 'cuda'"),
    (lambda: L.funm("exp", _diag(), torch.ones(5, device="meta")), ValueError, r"funm\('exp'\): expected v with data, got a tensor on the meta device"),
    (lambda: L.funm("exp", _diag(), _b(5, dtype=torch.float16)), TypeError, r"funm\('exp'\): expected v as float32, float64, complex64 or complex128, got torch.float16"),
    (lambda: L.sqrtm(_diag(), _b(5), bogus=1), TypeError, r"sqrtm: unexpected keyword argument 'bogus'"),
    (lambda: L.funm("exp", _diag(), _b(4)), ValueError, r"funm\('exp'\): expected v with trailing shape \(5,\), got \(4,\)"),
    (lambda: L.funm("exp", _diag(), torch.ones(5, dtype=torch.long)), ValueError, r"funm\('exp'\): expected v with a floating dtype, got torch.int64"),
    (lambda: L.funm("exp", _diag(), torch.tensor([1.0, NAN, 1, 1, 1], dtype=F64)), ValueError, r"funm\('exp'\): expected a finite v, got NaN or inf entries"),
    (lambda: L.funm("exp", R, torch.ones(8, 8, dtype=F64)), ValueError, r"funm\('exp'\): expected a square operator, got in_shape \(8, 8\) and out_shape \(4, 4\)"),
    (lambda: L.funm(lambda x: x.sum(), _dense(), _b(), method="dense"), ValueError, r"funm: expected f \(<lambda>\) to return the shape of its input"),
    # ---------------------------------------------------------------------- solvers
    (lambda: L.cg(_dense(), _b(), tol=0), ValueError, r"cg: expected tol > 0 \(a finite real number\), got 0"),
    (lambda: L.cg(_dense(), _b(), max_iters=2.5), ValueError, r"cg: expected max_iters >= 1 \(an int\) or None, got 2.5"),
    (lambda: L.cg(_dense(), _b(3)), ValueError, r"cg: expected b with trailing shape \(4,\) \(A.in_shape of Dense\), got b of shape \(3,\)"),
    (lambda: L.cg(_dense(), _b(dtype=torch.float16)), TypeError, r"cg: expected b as float32, float64, complex64 or complex128, got torch.float16"),
    (lambda: L.cg(_dense(), _b(device="meta")), ValueError, r"cg: expected b with data, got a tensor on the meta device"),
    (lambda: L.cg(_dense(), _b(), M=torch.eye(4)), TypeError, r"cg: expected M to be a LinearOperator or None, got Tensor"),
    (lambda: L.cg(_dense(), _b(), M=L.Identity((5,))), ValueError, r"cg: expected M with in_shape == out_shape == A.in_shape \(4,\)"),
    (lambda: L.cg(R, torch.ones(8, 8, dtype=F64)), ValueError, r"cg: expected a square operator \(in_shape == out_shape\)"),
    (lambda: L.minres(_dense(), _b(), shift=NAN), ValueError, r"minres: expected shift to be a finite real number, got nan"),
    (lambda: L.minres(_dense(), np.ones(4)), TypeError, r"minres: expected b to be a torch.Tensor, got ndarray"),
    (lambda: L.minres(_dense(), _b(), x0=torch.ones(4, device="meta")), ValueError, r"minres: expected x0 with data, got a tensor on the meta device"),
    (lambda: L.minres(_dense(), _b(), x0=torch.full((4,), NAN, dtype=F64)), ValueError, r"minres: expected a finite x0, got NaN or inf entries"),
    (lambda: L.lsqr(_dense(), _b(), damp=-1.0), ValueError, r"lsqr: expected damp to be a finite real number >= 0, got -1.0"),
    (lambda: L.lsqr(_tall(), torch.ones(2, dtype=F64)), ValueError, r"lsqr: expected b with trailing shape \(3,\) \(A.out_shape of Dense\), got b of shape \(2,\)"),
    (lambda: L.lsqr(_dense(), _b(), x0=torch.ones(3, dtype=F64)), ValueError, r"lsqr: expected x0 of shape \(4,\) \(b's batch and A.in_shape\), got \(3,\)"),
    (lambda: L.solve(_dense(), _b(), method="gmres"), ValueError, r"solve: expected method in \('auto', 'exact', 'cg', 'minres', 'lsqr'\), got 'gmres'"),
    (lambda: L.solve(_dense(), _b(), damp=0.1), TypeError, r"solve: expected keyword arguments of method='auto' \(x0\), got unexpected damp"),
    (lambda: L.solve(_dense(), _b(), throw=1), TypeError, r"solve: expected throw to be a bool, got int"),
    (lambda: L.solve(_dense(), torch.tensor([1.0, NAN, 1.0, 1.0], dtype=F64)), ValueError, r"solve: expected a finite b, got NaN or inf entries"),
]

test_bad_inputs = raises_test(ERRORS)


def test_empty_batches_give_empty_results():
    """No right-hand side is not an error: every operator maps an empty batch to one."""
    for A, shape in [(L.FFT2((4, 4)), (0, 4, 4)), (R, (0, 8, 8)), (L.DCT2((4, 4)), (0, 4, 4))]:
        assert A.apply(torch.ones(shape)).shape[0] == 0
    assert L.dct2(torch.ones(0, 4, 4)).shape == (0, 4, 4)
    assert L.cg(_dense(), torch.ones(0, 4, dtype=F64)).value.shape == (0, 4)


@pytest.mark.parametrize(
    ("A", "method", "route"),
    [
        (_diag(), "auto", "lanczos"),  # no exact structure: Lanczos
        (_diag(), "lanczos", "lanczos"),
        (_diag(), "dense", "dense"),
        (L.ScaledIdentity((5,), 2.0), "exact", "scaled_identity"),
        (L.Identity((8, 8)) - 3.0 * (R.H @ R), "exact", "kronecker"),
        (L.Identity((8, 8)) - 3.0 * (R.H @ R), "auto", "kronecker"),
        (L.BasisDiagonal(L.DCT2((4, 4)), torch.arange(1.0, 17.0, dtype=F64).reshape(4, 4)), "exact", "basis_diagonal"),
    ],
)
@pytest.mark.parametrize("f", ["sqrt", "exp"])
def test_funm_of_an_empty_batch_is_an_empty_result(A, method, route, f):
    """No right-hand side gives an empty result on every route, as the solvers do."""
    v = torch.ones(0, *A.in_shape, dtype=F64)
    res = L.funm(f, A, v, method=method)
    assert res.value.shape == v.shape and res.value.dtype == F64
    assert res.method == route and res.num_iters == 0 and res.converged is True
    assert res.error_estimate.shape == (0,)
    # a batch of batches, empty in one axis
    v = torch.ones(2, 0, *A.in_shape, dtype=F64)
    res = L.funm(f, A, v, method=method, throw=True)
    assert res.value.shape == v.shape and res.error_estimate.shape == (2, 0) and res.converged
