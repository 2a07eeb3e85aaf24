"""Every operator of linops, each with a dense reference built by an independent route.

Used by the shared operator contract (test_contract.py). Each entry returns
``(operator, reference)``; ``reference`` is the float64 (or complex128) dense
matrix from scipy, numpy or a closed form, never from the operator itself.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from dense_references import (
    blur_reference,
    dct2_reference,
    dct_matrix,
    fft2_reference,
    resize_weights_1d,
)

import linops


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def identity():
    return linops.Identity((2, 3, 4)), torch.eye(24, dtype=torch.float64)


def scaled_identity():
    return linops.ScaledIdentity((3, 5), -0.7), -0.7 * torch.eye(15, dtype=torch.float64)


def diagonal_broadcast():
    d = torch.randn(3, 1, 4, dtype=torch.float64, generator=_gen(1))
    ref = torch.diag(d.expand(3, 5, 4).reshape(-1))
    return linops.Diagonal(d, shape=(3, 5, 4)), ref


def diagonal_complex():
    g = _gen(2)
    d = torch.complex(
        torch.randn(6, dtype=torch.float64, generator=g),
        torch.randn(6, dtype=torch.float64, generator=g),
    )
    return linops.Diagonal(d), torch.diag(d)


def dense_shaped():
    m = torch.randn(10, 6, dtype=torch.float64, generator=_gen(3))
    return linops.Dense(m, in_shape=(2, 3), out_shape=(5, 2)), m


def _resize_ref(c, n_h, n_w, m_h, m_w, mode, antialias):
    r_h = torch.from_numpy(resize_weights_1d(n_h, m_h, mode, antialias))
    r_w = torch.from_numpy(resize_weights_1d(n_w, m_w, mode, antialias))
    return torch.kron(torch.eye(c, dtype=torch.float64), torch.kron(r_h, r_w))


def resize_down_aa():
    return linops.Resize((2, 9, 12), (4, 6)), _resize_ref(2, 9, 12, 4, 6, "bilinear", True)


def resize_up_noninteger_bicubic():
    op = linops.Resize((5, 7), (8, 10), mode="bicubic", antialias=False)
    return op, _resize_ref(1, 5, 7, 8, 10, "bicubic", False)


def resize_bicubic_aa_mixed():
    op = linops.Resize((11, 6), (4, 9), mode="bicubic", antialias=True)
    return op, _resize_ref(1, 11, 6, 4, 9, "bicubic", True)


def resize_vjp_adjoint():
    op = linops.Resize((1, 10, 10), (7, 7), adjoint="vjp")
    return op, _resize_ref(1, 10, 10, 7, 7, "bilinear", True)


def blur_reflect():
    return linops.GaussianBlur((2, 7, 9), (1.3, 0.8)), blur_reference(
        (2, 7, 9), (1.3, 0.8), "reflect"
    )


def blur_circular_wide():
    # radius 8 > image side 6: the boundary rule is applied repeatedly
    op = linops.GaussianBlur((6, 5), 2.0, boundary="circular")
    return op, blur_reference((6, 5), (2.0, 2.0), "circular")


def blur_symmetric():
    op = linops.GaussianBlur((5, 8), 1.0, boundary="symmetric")
    return op, blur_reference((5, 8), (1.0, 1.0), "symmetric")


def dct2():
    return linops.DCT2((2, 5, 6)), dct2_reference((2, 5, 6))


def fft2():
    return linops.FFT2((4, 5)), fft2_reference((4, 5))


def basis_diagonal_dct():
    d = torch.rand(5, 4, dtype=torch.float64, generator=_gen(4))
    v = torch.from_numpy(np.kron(dct_matrix(5), dct_matrix(4)))
    return linops.BasisDiagonal(linops.DCT2((5, 4)), d), v.T @ torch.diag(d.reshape(-1)) @ v


def kronecker_matrices():
    g = _gen(5)
    a, b = (
        torch.randn(3, 4, dtype=torch.float64, generator=g),
        torch.randn(5, 2, dtype=torch.float64, generator=g),
    )
    return linops.Kronecker(a, b, lead_shape=(2,)), torch.kron(
        torch.eye(2, dtype=torch.float64), torch.kron(a, b)
    )


def kronecker_operators():
    d = torch.randn(6, dtype=torch.float64, generator=_gen(6))
    m = torch.randn(4, 3, dtype=torch.float64, generator=_gen(7))
    op = linops.Kronecker(linops.Diagonal(d), linops.Dense(m))
    return op, torch.kron(torch.diag(d), m)


def function_avg_pool():
    op = linops.FunctionOperator(lambda x: F.avg_pool2d(x, 2), (2, 4, 6), (2, 2, 3))
    ref = torch.zeros(12, 48, dtype=torch.float64)
    for c in range(2):
        for i in range(2):
            for j in range(3):
                for di in range(2):
                    for dj in range(2):
                        ref[c * 6 + i * 3 + j, c * 24 + (2 * i + di) * 6 + 2 * j + dj] = 0.25
    return op, ref


def composed_resize_normal():
    _, r = resize_down_aa()
    op = linops.Resize((2, 9, 12), (4, 6))
    return op.H @ op, r.T @ r


def sum_scaled():
    blur, b = blur_reflect()
    ident = torch.eye(b.shape[0], dtype=torch.float64)
    return 2.5 * blur - linops.Identity(blur.in_shape), 2.5 * b - ident


def adjoint_of_dense():
    op, m = dense_shaped()
    return op.H, m.T


CATALOGUE = {
    f.__name__: f
    for f in [
        identity,
        scaled_identity,
        diagonal_broadcast,
        diagonal_complex,
        dense_shaped,
        resize_down_aa,
        resize_up_noninteger_bicubic,
        resize_bicubic_aa_mixed,
        resize_vjp_adjoint,
        blur_reflect,
        blur_circular_wide,
        blur_symmetric,
        dct2,
        fft2,
        basis_diagonal_dct,
        kronecker_matrices,
        kronecker_operators,
        function_avg_pool,
        composed_resize_normal,
        sum_scaled,
        adjoint_of_dense,
    ]
}
