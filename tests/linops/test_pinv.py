"""pinv of Kronecker-structured operators against numpy's dense pseudo-inverse."""

import numpy as np
import pytest
import torch

import linops


@pytest.mark.parametrize(
    "make",
    [
        lambda: linops.Resize((2, 9, 12), (4, 6)),
        lambda: linops.Resize((2, 5, 7), (8, 10), mode="bicubic", antialias=False),
        lambda: linops.Resize((1, 4, 4), (2, 2)) @ linops.Resize((1, 8, 8), (4, 4)),
        lambda: 2.0 * linops.GaussianBlur((6, 5), 1.0).H,
    ],
)
def test_against_dense_pinv(make):
    A = make()
    P = linops.pinv(A)
    assert P.in_shape == A.out_shape and P.out_shape == A.in_shape
    want = np.linalg.pinv(A.to_dense().numpy(), rcond=1e-12)
    # two routes to the same pseudo-inverse of well-conditioned factors: 1e-10
    np.testing.assert_allclose(P.to_dense().numpy(), want, atol=1e-10)


def test_rejects_unstructured():
    with pytest.raises(ValueError, match=r"pinv: expected a Kronecker-structured operator"):
        linops.pinv(linops.Dense(torch.eye(4), (2, 2), (2, 2)))
