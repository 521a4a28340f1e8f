"""Grouped-matmul backends for expert-sorted rows: ``jax.lax.ragged_dot`` and megablox.

The dropless layer has three ways to run each expert on its own rows
(``MoEConfig.grouped_matmul``):

* ``"tiled"`` (``jaxmoe.experts.grouped_swiglu``): a ``fori_loop`` over row tiles, fused
  with gather and scatter. The fast choice on CPU, where ``ragged_dot`` lowers to a
  zero-padded dense matmul (about E/k times the work).
* ``"ragged_dot"``: rows gathered into expert order, then ``jax.lax.ragged_dot`` for the
  up and down projections (cuDNN / cuBLAS grouped GEMM on recent XLA:GPU builds).
* ``"megablox"``: the same with the Pallas TPU kernel
  ``jax.experimental.pallas.ops.tpu.megablox.gmm`` (custom VJP: ``gmm`` and ``tgmm``).
  Off TPU it runs with ``interpret=True`` (correct, slow), which is how the tests
  check it on CPU.

``"auto"`` picks by ``jax.default_backend()`` when the layer is traced: tiled on CPU,
ragged_dot on GPU, megablox on TPU.

Rows past ``sum(group_sizes)`` (padding and pruned assignments) belong to no group:
``ragged_dot`` returns zeros there, megablox leaves them uninitialised, so both
projections mask them (``jnp.where``, whose transpose also masks the cotangent).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmoe.experts import swiglu_from_h
from jaxmoe.precision import accumulation_dtype

#: ``jax.default_backend()`` → backend chosen by ``grouped_matmul="auto"``.
AUTO_BACKENDS = {"cpu": "tiled", "gpu": "ragged_dot", "cuda": "ragged_dot", "rocm": "ragged_dot"}
AUTO_BACKENDS["tpu"] = "megablox"
RAGGED_BACKENDS = ("ragged_dot", "megablox")
#: megablox ``(tm, tk, tn)`` tiles on TPU; each shrinks to the problem size when smaller.
MEGABLOX_TILING = (128, 128, 128)


def resolve_backend(name: str, platform: str | None = None) -> str:
    """The concrete backend of a ``MoEConfig.grouped_matmul`` value on ``platform``.

    Args:
      name: ``"auto"``, ``"tiled"``, ``"ragged_dot"`` or ``"megablox"``.
      platform: ``jax.default_backend()`` when None.
    """
    if name != "auto":
        return name
    return AUTO_BACKENDS.get(platform or jax.default_backend(), "tiled")


def row_padding(backend: str, num_rows: int) -> int:
    """Rows of the sorted buffer: megablox needs a multiple of its row tile ``tm``."""
    if backend != "megablox":
        return num_rows
    tm = _megablox_tm(num_rows)
    return -(-num_rows // tm) * tm


def _megablox_tm(num_rows: int) -> int:
    return min(MEGABLOX_TILING[0], max(8, -(-num_rows // 8) * 8))


def _megablox(lhs: jax.Array, rhs: jax.Array, sizes: jax.Array, out_dtype) -> jax.Array:
    from jax.experimental.pallas.ops.tpu.megablox import gmm

    for name, a in (("rows", lhs), ("expert weights", rhs)):
        if a.dtype not in (jnp.float32, jnp.bfloat16):
            raise ValueError(
                f"grouped_matmul='megablox' supports float32 and bfloat16, got {name} of "
                f"dtype {a.dtype}; use 'ragged_dot' or 'tiled' for other dtypes"
            )
    m, k = lhs.shape
    if m % _megablox_tm(m):
        raise ValueError(f"megablox rows {m} must be padded with row_padding() first")
    tiling = (_megablox_tm(m), min(MEGABLOX_TILING[1], k), min(MEGABLOX_TILING[2], rhs.shape[2]))
    interpret = jax.default_backend() != "tpu"
    return gmm(lhs, rhs, sizes, out_dtype, tiling, interpret=interpret)


def grouped_matmul(lhs: jax.Array, rhs: jax.Array, sizes: jax.Array, backend: str) -> jax.Array:
    """``out[r] = lhs[r] @ rhs[g(r)]`` for rows sorted by group, zero past the last group.

    Args:
      lhs: ``[M, K]`` rows, sorted by group (group g holds ``sizes[g]`` consecutive rows).
      rhs: ``[G, K, N]`` one matrix per group.
      sizes: ``[G]`` int32, ``sum(sizes) <= M``.
      backend: ``"ragged_dot"`` or ``"megablox"``.

    Returns:
      ``[M, N]`` in ``lhs.dtype``, accumulated in ``accumulation_dtype(lhs.dtype)``.
    """
    acc = accumulation_dtype(lhs.dtype)
    valid = (jnp.arange(lhs.shape[0]) < jnp.sum(sizes))[:, None]
    lhs = jnp.where(valid, lhs, jnp.zeros((), lhs.dtype))
    if backend == "ragged_dot":
        out = jax.lax.ragged_dot(lhs, rhs, sizes, preferred_element_type=acc)
    elif backend == "megablox":
        out = _megablox(lhs, rhs.astype(lhs.dtype), sizes, acc)
    else:
        raise ValueError(f"grouped backend must be one of {RAGGED_BACKENDS}, got {backend!r}")
    return jnp.where(valid, out, jnp.zeros((), acc)).astype(lhs.dtype)


def sorted_swiglu(
    xs: jax.Array, sizes: jax.Array, w_in: jax.Array, w_out: jax.Array, backend: str
) -> jax.Array:
    """SwiGLU experts on expert-sorted rows: ``[M, d] → [M, d]``.

    Args:
      xs: ``[M, d]`` rows sorted by expert; rows past ``sum(sizes)`` give zeros.
      sizes: ``[G]`` int32 rows per expert.
      w_in: ``[G, d, 2f]`` fused gate/up weights; ``w_out``: ``[G, f, d]``.
      backend: ``"ragged_dot"`` or ``"megablox"``.

    Returns:
      ``[M, d]`` in ``xs.dtype``: ``silu(x W_gate) ⊙ (x W_up) W_down`` per row.
    """
    with jax.named_scope(f"experts_{backend}"):
        h = grouped_matmul(xs, w_in.astype(xs.dtype), sizes, backend)
        return grouped_matmul(swiglu_from_h(h), w_out.astype(xs.dtype), sizes, backend)
