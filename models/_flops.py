"""FLOP and parameter counts of a network call."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops", "count_parameters"]

aten = torch.ops.aten


def _prod(values) -> int:
    return math.prod(int(v) for v in values)


def _sdpa_cpu_flop(query, key, value, *args, out_shape=None, **kwargs) -> int:
    # Q K^T and P V: two batched matrix products, 2 flops per multiply-add.
    b, h, s_q, d = query
    s_k, d_v = key[-2], value[-1]
    return 2 * b * h * s_q * s_k * (d + d_v)


def _sdpa_cpu_backward_flop(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    # dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q: twice the forward products,
    # the same count torch's flop counter uses for the CUDA attention kernels.
    return 2 * _sdpa_cpu_flop(query, key, value)


def _fft_flop(shape, dim, cost_per_point_log: float) -> int:
    n = _prod(shape[d] for d in dim)
    batch = _prod(shape) // max(n, 1)
    return int(cost_per_point_log * n * math.log2(n) * batch) if n > 1 else 0


def _fft_r2c_flop(x, dim, normalization, onesided, out_shape=None, **kwargs) -> int:
    # The usual convention: 5 n log2 n real flops for a complex FFT of n points,
    # half of it for a real-input transform.
    return _fft_flop(x, dim, 2.5)


def _fft_c2r_flop(x, dim, normalization, last_dim_size, out_shape=None, **kwargs) -> int:
    return _fft_flop(out_shape, dim, 2.5)


def _fft_c2c_flop(x, dim, normalization, forward, out_shape=None, **kwargs) -> int:
    return _fft_flop(x, dim, 5.0)


def _mm_flop(a, b, *args, out_val=None, **kwargs) -> int:
    flops = 2 * _prod(a.shape) * b.shape[-1]
    # a complex multiply-add is 4 real multiplications and 4 real additions
    return 4 * flops if a.is_complex() else flops


def _bmm_flop(a, b, *args, out_val=None, **kwargs) -> int:
    return _mm_flop(a, b)


# these two receive the tensors, not only their shapes, to see the dtype
_mm_flop._get_raw = True  # type: ignore[attr-defined]
_bmm_flop._get_raw = True  # type: ignore[attr-defined]

# Ops that torch's FlopCounterMode does not know (CPU attention, FFTs) or counts as real
# (complex matrix products, used by the spectral convolution).
_EXTRA_FORMULAS = {
    aten.mm: _mm_flop,
    aten.bmm: _bmm_flop,
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward_flop,
    aten._fft_r2c: _fft_r2c_flop,
    aten._fft_c2r: _fft_c2r_flop,
    aten._fft_c2c: _fft_c2c_flop,
}


def _graph_leaves(out: Tensor) -> list[Tensor]:
    """The leaf tensors (parameters, inputs) that require grad and ``out`` depends on."""
    leaves, seen, stack = [], set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad nodes hold the leaf
        if variable is not None:
            leaves.append(variable)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return leaves


def count_flops(fn: Callable[..., Tensor], *inputs: Any, backward: bool = False) -> int:
    """Floating-point operations of one call ``fn(*inputs)``, optionally with its backward pass.

    Counts with :class:`torch.utils.flop_counter.FlopCounterMode`: matrix
    products and convolutions at 2 flops per multiply-add, plus formulas added
    here for the ops it does not know: the CPU attention kernel (same
    convention as torch's CUDA attention formulas) and FFTs (``5 n log2 n`` per
    complex transform of ``n`` points, half that for real-input and
    real-output transforms); complex matrix products count 8 real flops per
    multiply-add. Elementwise ops, normalisation and interpolation are not
    counted.

    Parameters
    ----------
    fn : callable returning a Tensor
        A module or function; bind keyword arguments with :func:`functools.partial`
        (``partial(flexi, out_size=32)``).
    *inputs
        Positional arguments of the call.
    backward : bool, default False
        Also count the gradients of the output (summed) with respect to every
        leaf tensor that requires grad and that the output depends on (the
        parameters the call used, and inputs that require grad), i.e. the cost
        of a training step without the optimiser. No ``.grad`` is written.

    Returns
    -------
    int

    Examples
    --------
    >>> import torch
    >>> from models import count_flops
    >>> lin = torch.nn.Linear(4, 3, bias=False)
    >>> x = torch.randn(10, 4)
    >>> count_flops(lin, x)                  # 2 * 10 * 4 * 3
    240
    >>> count_flops(lin, x, backward=True)   # plus dL/dW = dY^T X; x needs no gradient
    480
    """
    if not callable(fn):
        raise TypeError(f"count_flops: expected fn as a callable, got {type(fn).__name__}")
    counter = FlopCounterMode(display=False, custom_mapping=dict(_EXTRA_FORMULAS))
    with counter:
        if not backward:
            with torch.no_grad():
                out = fn(*inputs)
        else:
            out = fn(*inputs)
        if not isinstance(out, Tensor):
            raise TypeError(
                f"count_flops: expected fn to return a Tensor, got {type(out).__name__}"
            )
        if backward:
            leaves = _graph_leaves(out)
            if not leaves:
                raise ValueError(
                    "count_flops: expected an output that depends on tensors requiring grad "
                    "when backward=True, got one that depends on none"
                )
            torch.autograd.grad(out, leaves, grad_outputs=torch.ones_like(out), allow_unused=True)
    return int(counter.get_total_flops())


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of real parameters of a module.

    Parameters
    ----------
    module : nn.Module
    trainable_only : bool, default False
        Count only parameters with ``requires_grad``.

    Returns
    -------
    int
        A complex weight counts twice (it is stored as real and imaginary part).

    Examples
    --------
    >>> import torch
    >>> from models import count_parameters
    >>> count_parameters(torch.nn.Conv2d(3, 8, 3))   # 8 * 3 * 3 * 3 + 8
    224
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"count_parameters: expected an nn.Module, got {type(module).__name__}")
    return sum(
        p.numel() * (2 if p.is_complex() else 1)
        for p in module.parameters()
        if p.requires_grad or not trainable_only
    )
