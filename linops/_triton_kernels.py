"""Triton kernels behind :mod:`linops._fused` (private; use the functions there).

Imported lazily by :mod:`linops._fused` once it has checked that triton is
installed. The module itself stays importable without triton (pytest's
``--doctest-modules`` imports every file of the package), it then defines
no kernels.

Whether the kernels run compiled (CUDA) or in Triton's interpreter (CPU
tensors, ``TRITON_INTERPRET=1``) is fixed when this module is imported: that
is when ``@triton.jit`` reads the variable. :data:`INTERPRETED` records it.

Both launchers take validated, same-dtype, same-device float32/float64 tensors;
the checks live in :mod:`linops._fused`.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - _fused checks for triton before calling in
    triton = None
    tl = None

__all__ = ["INTERPRETED", "kron_matvec", "lanczos_step"]

if triton is not None:

    @triton.jit
    def _kron_matvec_kernel(
        v_ptr,
        gh_ptr,
        gw_ptr,
        y_ptr,
        H,
        W,
        stride_vn,
        stride_vh,
        stride_vw,
        stride_ghr,
        stride_ghc,
        stride_gwr,
        stride_gwc,
        stride_yn,
        stride_yh,
        stride_yw,
        a_hi,
        a_lo,
        b_hi,
        b_lo,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        BLOCK_J: tl.constexpr,
    ):
        # One program per (batch item, row block, column block) of Y:
        #   Y[r, c] = a V[r, c] + b sum_j (sum_k G_h[r, k] V[k, j]) G_w[c, j].
        # The inner sum T[r, j-block] is recomputed per column block; with
        # BLOCK_N >= W (the usual choice, W <= 128) there is one column block.
        pid_n = tl.program_id(0)
        pid_m = tl.program_id(1)
        pid_c = tl.program_id(2)
        dt = y_ptr.dtype.element_ty
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = pid_c * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < H
        col_ok = cols < W
        v_base = v_ptr + pid_n.to(tl.int64) * stride_vn

        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=dt)
        for j0 in range(0, W, BLOCK_J):
            js = j0 + tl.arange(0, BLOCK_J)
            j_ok = js < W
            t = tl.zeros((BLOCK_M, BLOCK_J), dtype=dt)
            for k0 in range(0, H, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                k_ok = ks < H
                gh = tl.load(
                    gh_ptr + rows[:, None] * stride_ghr + ks[None, :] * stride_ghc,
                    mask=row_ok[:, None] & k_ok[None, :],
                    other=0.0,
                )
                vk = tl.load(
                    v_base + ks[:, None] * stride_vh + js[None, :] * stride_vw,
                    mask=k_ok[:, None] & j_ok[None, :],
                    other=0.0,
                )
                # "ieee": plain float32 products; the default tf32 would lose ~3 digits
                # against the float32 torch specification (float64 ignores the option).
                t = tl.dot(gh, vk, t, input_precision="ieee")
            # G_w^T[j, c] = G_w[c, j]: read G_w transposed through its strides.
            gwt = tl.load(
                gw_ptr + js[:, None] * stride_gwc + cols[None, :] * stride_gwr,
                mask=j_ok[:, None] & col_ok[None, :],
                other=0.0,
            )
            acc = tl.dot(t, gwt, acc, input_precision="ieee")

        mask = row_ok[:, None] & col_ok[None, :]
        v_blk = tl.load(
            v_base + rows[:, None] * stride_vh + cols[None, :] * stride_vw, mask=mask, other=0.0
        )
        # a and b arrive as float32 (hi, lo) pairs: Python floats are passed to
        # kernels as float32, so a float64 value is split on the host and
        # re-assembled here (~48 significant bits, far below float64 test tolerances).
        a = tl.cast(a_hi, dt) + tl.cast(a_lo, dt)
        b = tl.cast(b_hi, dt) + tl.cast(b_lo, dt)
        y = a * v_blk + b * acc
        y_base = y_ptr + pid_n.to(tl.int64) * stride_yn
        tl.store(y_base + rows[:, None] * stride_yh + cols[None, :] * stride_yw, y, mask=mask)

    @triton.jit
    def _lanczos_step_kernel(
        w_ptr,
        v_ptr,
        vp_ptr,
        bp_ptr,
        out_ptr,
        alpha_ptr,
        beta_ptr,
        n,
        stride_wb,
        stride_wn,
        stride_vb,
        stride_vn,
        stride_vpb,
        stride_vpn,
        stride_bp,
        stride_ob,
        stride_on,
        BLOCK: tl.constexpr,
        ONE_PASS: tl.constexpr,
    ):
        # One program per row. Sums are accumulated elementwise in a BLOCK-long
        # vector and reduced once at the end (pairwise-like tree in tl.sum),
        # which keeps the rounding error close to torch's blocked reductions.
        row = tl.program_id(0).to(tl.int64)
        dt = out_ptr.dtype.element_ty
        w_row = w_ptr + row * stride_wb
        v_row = v_ptr + row * stride_vb
        vp_row = vp_ptr + row * stride_vpb
        o_row = out_ptr + row * stride_ob
        beta_prev = tl.load(bp_ptr + row * stride_bp)
        offs = tl.arange(0, BLOCK)
        if ONE_PASS:
            # The row fits one block: read each vector once.
            ok = offs < n
            w = tl.load(w_row + offs * stride_wn, mask=ok, other=0.0)
            v = tl.load(v_row + offs * stride_vn, mask=ok, other=0.0)
            vp = tl.load(vp_row + offs * stride_vpn, mask=ok, other=0.0)
            alpha = tl.sum(v * w, axis=0)
            w_new = w - alpha * v - beta_prev * vp
            tl.store(o_row + offs * stride_on, w_new, mask=ok)
            sumsq = tl.sum(w_new * w_new, axis=0)
        else:
            dot_acc = tl.zeros((BLOCK,), dtype=dt)
            for start in range(0, n, BLOCK):
                idx = start + offs
                ok = idx < n
                w = tl.load(w_row + idx * stride_wn, mask=ok, other=0.0)
                v = tl.load(v_row + idx * stride_vn, mask=ok, other=0.0)
                dot_acc += v * w
            alpha = tl.sum(dot_acc, axis=0)
            sq_acc = tl.zeros((BLOCK,), dtype=dt)
            for start in range(0, n, BLOCK):
                idx = start + offs
                ok = idx < n
                w = tl.load(w_row + idx * stride_wn, mask=ok, other=0.0)
                v = tl.load(v_row + idx * stride_vn, mask=ok, other=0.0)
                vp = tl.load(vp_row + idx * stride_vpn, mask=ok, other=0.0)
                w_new = w - alpha * v - beta_prev * vp
                tl.store(o_row + idx * stride_on, w_new, mask=ok)
                sq_acc += w_new * w_new
            sumsq = tl.sum(sq_acc, axis=0)
        tl.store(alpha_ptr + row, alpha)
        tl.store(beta_ptr + row, tl.sqrt(sumsq))


# What @triton.jit decided when the kernels above were defined (it reads
# TRITON_INTERPRET then): interpreted kernels run on CPU tensors, compiled ones need CUDA.
INTERPRETED: bool = (
    triton is not None and type(_kron_matvec_kernel).__name__ == "InterpretedFunction"
)


def _pow2(n: int, low: int = 16) -> int:
    return max(low, triton.next_power_of_2(int(n)))


def _split_f32(x: float) -> tuple[float, float]:
    """``x`` as ``hi + lo`` with both parts exactly representable in float32."""
    hi = float(torch.tensor(x, dtype=torch.float32))
    lo = float(torch.tensor(x - hi, dtype=torch.float32))
    return hi, lo


def kron_matvec_blocks(H: int, W: int, dtype: torch.dtype) -> dict:  # noqa: N803 - image sides
    """Tile sizes for :func:`kron_matvec` (all >= 16, the smallest ``tl.dot`` we use)."""
    hp, wp = _pow2(H), _pow2(W)
    if INTERPRETED:
        # The interpreter runs each block op as one numpy call: whole matrices in
        # one program are fastest (up to 128 per side; larger sizes loop).
        return {
            "BLOCK_M": min(hp, 128),
            "BLOCK_N": min(wp, 128),
            "BLOCK_K": min(hp, 128),
            "BLOCK_J": min(wp, 128),
            "num_warps": 4,
        }
    # GPU: 32-row tiles, whole rows of Y (W <= 128) so T is never recomputed;
    # float64 tiles are twice the registers, so halve the row block.
    bm = 32 if dtype == torch.float32 else 16
    return {
        "BLOCK_M": min(hp, bm),
        "BLOCK_N": min(wp, 128),
        "BLOCK_K": min(hp, 32),
        "BLOCK_J": min(wp, 32),
        "num_warps": 4,
    }


def kron_matvec(
    v: torch.Tensor,
    G_h: torch.Tensor,  # noqa: N803 - matrix names
    G_w: torch.Tensor,  # noqa: N803
    a: float,
    b: float,
    *,
    blocks: dict | None = None,
) -> torch.Tensor:
    """``a v + b G_h V G_w^T`` for ``v`` of shape ``(N, H, W)``; ``blocks`` overrides the tiling."""
    n_items, H, W = v.shape  # noqa: N806
    y = torch.empty((n_items, H, W), dtype=v.dtype, device=v.device)
    cfg = dict(kron_matvec_blocks(H, W, v.dtype) if blocks is None else blocks)
    num_warps = cfg.pop("num_warps", 4)
    grid = (n_items, triton.cdiv(H, cfg["BLOCK_M"]), triton.cdiv(W, cfg["BLOCK_N"]))
    a_hi, a_lo = _split_f32(a)
    b_hi, b_lo = _split_f32(b)
    _kron_matvec_kernel[grid](
        v,
        G_h,
        G_w,
        y,
        H,
        W,
        *v.stride(),
        *G_h.stride(),
        *G_w.stride(),
        *y.stride(),
        a_hi,
        a_lo,
        b_hi,
        b_lo,
        num_warps=num_warps,
        **cfg,
    )
    return y


def lanczos_step_block(n: int, dtype: torch.dtype) -> tuple[int, int]:
    """``(BLOCK, num_warps)`` for :func:`lanczos_step` on rows of length ``n``."""
    if INTERPRETED:
        return min(_pow2(n), 1 << 16), 4
    # Up to 4096 float32 (2048 float64) elements per row in registers: one pass.
    cap = 4096 if dtype == torch.float32 else 2048
    block = min(_pow2(n, 128), cap)
    return block, (4 if block <= 1024 else 8)


def lanczos_step(
    w: torch.Tensor,
    v: torch.Tensor,
    v_prev: torch.Tensor,
    beta_prev: torch.Tensor,
    *,
    block: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused three-term update for ``(B, n)`` rows; ``block`` overrides the block length."""
    rows, n = w.shape
    out = torch.empty((rows, n), dtype=w.dtype, device=w.device)
    alpha = torch.empty((rows,), dtype=w.dtype, device=w.device)
    beta = torch.empty((rows,), dtype=w.dtype, device=w.device)
    default_block, num_warps = lanczos_step_block(n, w.dtype)
    block = default_block if block is None else int(block)
    _lanczos_step_kernel[(rows,)](
        w,
        v,
        v_prev,
        beta_prev,
        out,
        alpha,
        beta,
        n,
        *w.stride(),
        *v.stride(),
        *v_prev.stride(),
        beta_prev.stride(0),
        *out.stride(),
        BLOCK=block,
        ONE_PASS=n <= block,
        num_warps=num_warps,
    )
    return out, alpha, beta
