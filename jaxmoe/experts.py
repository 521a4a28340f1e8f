"""SwiGLU expert computations on expert buffers.

Weights: ``w_in [G, d_model, 2·d_expert]`` (gate and up projections fused along the
last axis, gate first) and ``w_out [G, d_expert, d_model]``. An expert computes
``silu(x @ W_gate) * (x @ W_up) @ W_down``. Matmuls accumulate in at least float32
(``preferred_element_type``; float64 inputs accumulate in float64, see
``jaxmoe.precision``) and return the input dtype.

* ``grouped_swiglu``: the dropless grouped matmul, fused with dispatch and combine.
  A list of rows, sorted by expert into whole top-size tiles plus at most one tile
  per smaller size for each expert's remainder (``jaxmoe.dispatch.TileLayout``), names
  the token each row reads and its gate weight. A ``fori_loop`` per tile size over the
  tiles that hold rows (a dynamic trip count: empty tiles cost nothing) gathers the
  tile's tokens, runs its expert and scatter-adds the gate-weighted outputs back into
  the tokens. Work is proportional
  to real rows (≤ ``T·k + E·(smallest tile − 1)``), never ``E/k`` times the dense work
  the way the CPU/GPU lowering of ``jax.lax.ragged_dot`` (a zero-padded dense matmul:
  its expert matmuls alone measured 11–19× a dense MLP here) is. Gathering and
  scattering inside the loop keeps no ``[rows, d]`` buffers alive (only the
  ``[rows, 2f]`` pre-activations the backward pass needs, as in a dense MLP), which
  matters on CPU where every fresh temporary page costs a page fault. A custom VJP
  runs the backward pass as loops too, accumulating the weight gradients per tile in
  place, and gets the gate gradient from the down-projection's input gradient
  without an extra matmul.
* ``batched_swiglu``: fixed-capacity ``[G, C, d]`` buffers, one batched matmul.
* ``all_experts_swiglu``: every expert on every token ``[T, G, d]`` (reference, PES).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from jaxmoe.indexing import take_rows
from jaxmoe.precision import accumulation_dtype as _acc


def swiglu_from_h(h: jax.Array) -> jax.Array:
    """``[..., 2f]`` fused pre-activations (gate first) → ``silu(gate) ⊙ up`` ``[..., f]``."""
    gate, up = jnp.split(h.astype(_acc(h.dtype)), 2, axis=-1)
    return (jax.nn.silu(gate) * up).astype(h.dtype)


def swiglu(x: jax.Array, w_in: jax.Array, w_out: jax.Array) -> jax.Array:
    """One SwiGLU MLP: ``[..., d] → [..., d]`` with ``w_in [d, 2f]``, ``w_out [f, d]``."""
    acc = _acc(x.dtype)
    h = jnp.matmul(x, w_in, preferred_element_type=acc).astype(x.dtype)
    return jnp.matmul(swiglu_from_h(h), w_out, preferred_element_type=acc).astype(x.dtype)


def batched_swiglu(xb: jax.Array, w_in: jax.Array, w_out: jax.Array) -> jax.Array:
    """``[G, C, d]`` buffers through their own experts → ``[G, C, d]``."""
    acc = _acc(xb.dtype)
    h = jnp.einsum("gcd,gdf->gcf", xb, w_in, preferred_element_type=acc).astype(xb.dtype)
    a = swiglu_from_h(h)
    return jnp.einsum("gcf,gfd->gcd", a, w_out, preferred_element_type=acc).astype(xb.dtype)


def all_experts_swiglu(x: jax.Array, w_in: jax.Array, w_out: jax.Array) -> jax.Array:
    """Every expert on every token: ``[T, d] → [T, G, d]`` (G/k times a sparse layer's work)."""
    acc = _acc(x.dtype)
    h = jnp.einsum("td,gdf->tgf", x, w_in, preferred_element_type=acc).astype(x.dtype)
    a = swiglu_from_h(h)
    return jnp.einsum("tgf,gfd->tgd", a, w_out, preferred_element_type=acc).astype(x.dtype)


def _varying(a: jax.Array) -> set[str]:
    aval = jax.typeof(a)
    mat = getattr(aval, "manual_axis_type", None)
    if mat is not None:
        return set(mat.varying)
    return set(getattr(aval, "vma", ()) or ())


def _vary(z: jax.Array, *refs: jax.Array) -> jax.Array:
    """Marks ``z`` as varying over the manual mesh axes any of ``refs`` vary over.

    Inside ``shard_map`` (with ``check_vma``) constants such as ``jnp.zeros`` are
    invariant, and both branches of a ``cond`` / a scan carry must agree.
    """
    axes = set()
    for r in refs:
        axes |= _varying(r)
    axes -= _varying(z)
    return jax.lax.pcast(z, tuple(sorted(axes)), to="varying") if axes else z


def _match(ct: jax.Array, primal: jax.Array) -> jax.Array:
    """Gives a cotangent the manual-axis type of its primal input.

    A weight that is invariant over some mesh axis (e.g. replicated over ``data``) gets
    the **sum** of the per-device gradients over that axis; axes the primal varies over
    but the cotangent does not are marked varying.
    """
    extra = _varying(ct) - _varying(primal)
    if extra:
        ct = jax.lax.psum(ct, tuple(sorted(extra)))
    return _vary(ct, primal)


def _dot_t(a: jax.Array, b: jax.Array, a_dim: int, b_dim: int) -> jax.Array:
    """Contracts dimension ``a_dim`` of a with ``b_dim`` of b (2-D), accumulating in ≥ float32."""
    dims = (((a_dim,), (b_dim,)), ((), ()))
    return jax.lax.dot_general(a, b, dims, preferred_element_type=_acc(a.dtype))


def _levels(layout) -> list[tuple[int, int, int, int, int]]:
    """``(level, tile, count, first_row, first_tile)`` for each level of a ``TileLayout``."""
    return [(level, *v) for level, v in enumerate(layout.levels())]


def _level_rows(a: jax.Array, tile: int, count: int, row0: int) -> jax.Array:
    return a[row0 : row0 + count * tile].reshape(count, tile, *a.shape[1:])


@partial(jax.custom_vjp, nondiff_argnums=(7,))
def grouped_swiglu(
    x: jax.Array,
    rows: jax.Array,
    row_weight: jax.Array,
    w_in: jax.Array,
    w_out: jax.Array,
    tile_expert: jax.Array,
    num_used: jax.Array,
    layout,
) -> jax.Array:
    """Dropless grouped SwiGLU: ``y[n] = Σ_{r: rows[r]=n} row_weight[r] · f_{e(r)}(x[n])``.

    Args:
      x: ``[N, d]`` token rows.
      rows: ``[layout.num_rows]`` int32 token read (and written) by each buffer row: rows
        sorted by expert into the tiles of each level in turn (see
        ``jaxmoe.dispatch.TileLayout``); ``N`` (or any index ≥ N) marks a padding row. A
        token appears at most once per tile.
      row_weight: ``[layout.num_rows]`` float32 gate weight of each row.
      w_in: ``[G, d, 2f]`` fused gate/up weights; ``w_out``: ``[G, f, d]``.
      tile_expert: ``[layout.num_tiles]`` int32 expert of each tile.
      num_used: ``[L]`` int32 tiles of each level to compute (the rest are skipped).
      layout: static ``jaxmoe.dispatch.TileLayout`` (tile sizes and counts per level).

    Returns:
      ``[N, d]`` in x's dtype (accumulated in ``accumulation_dtype(x.dtype)``).
    """
    return _grouped_fwd(x, rows, row_weight, w_in, w_out, tile_expert, num_used, layout)[0]


def _grouped_fwd(x, rows, row_weight, w_in, w_out, tile_expert, num_used, layout):
    refs = (x, rows, row_weight, w_in, w_out, tile_expert, num_used)
    acc = _acc(x.dtype)
    out = _vary(jnp.zeros(x.shape, acc), *refs)
    hs = []
    for level, tile, count, row0, tile0 in _levels(layout):
        rows_t = _level_rows(rows, tile, count, row0)
        weight_t = _level_rows(row_weight, tile, count, row0).astype(acc)

        def body(i, carry, rows_t=rows_t, weight_t=weight_t, tile0=tile0):
            out, h = carry
            e, r = tile_expert[tile0 + i], rows_t[i]
            hi = jnp.matmul(take_rows(x, r), w_in[e], preferred_element_type=acc)
            hi = hi.astype(x.dtype)
            y = jnp.matmul(swiglu_from_h(hi), w_out[e], preferred_element_type=acc)
            out = out.at[r].add(y * weight_t[i][:, None], mode="drop")
            return out, jax.lax.dynamic_update_index_in_dim(h, hi, i, 0)

        h = _vary(jnp.zeros((rows_t.shape[0], tile, w_in.shape[-1]), x.dtype), *refs)
        out, h = jax.lax.fori_loop(0, num_used[level], body, (out, h))
        hs.append(h)
    return out.astype(x.dtype), (x, rows, row_weight, w_in, w_out, tile_expert, num_used, hs)


def _grouped_bwd(layout, res, dy):
    x, rows, row_weight, w_in, w_out, tile_expert, num_used, hs = res
    refs = (x, dy, rows, row_weight, w_in, w_out, tile_expert, num_used, *hs)
    acc = _acc(x.dtype)
    carry = tuple(_vary(jnp.zeros(s, acc), *refs) for s in (x.shape, w_in.shape, w_out.shape))
    d_weights = []
    for (level, tile, count, row0, tile0), h in zip(_levels(layout), hs):
        rows_t = _level_rows(rows, tile, count, row0)
        weight_t = _level_rows(row_weight, tile, count, row0).astype(acc)

        def body(i, carry, rows_t=rows_t, weight_t=weight_t, tile0=tile0, h=h):
            dx, d_in, d_out, d_weight = carry
            e, r, g = tile_expert[tile0 + i], rows_t[i], weight_t[i][:, None]
            xi, dyi = take_rows(x, r), take_rows(dy, r).astype(acc)
            gate, up = jnp.split(h[i].astype(acc), 2, axis=-1)
            sig = jax.nn.sigmoid(gate)
            silu = gate * sig
            a = silu * up
            u = _dot_t(dyi, w_out[e], 1, 1)  # d/da of Σ dy·(a @ W_down), before the gate
            d_weight = jax.lax.dynamic_update_index_in_dim(d_weight, jnp.sum(u * a, -1), i, 0)
            da = u * g
            dw_out = _dot_t(a.astype(x.dtype), (dyi * g).astype(x.dtype), 0, 0)
            d_gate = da * up * (sig * (1.0 + gate * (1.0 - sig)))
            dh = jnp.concatenate([d_gate, da * silu], axis=-1).astype(x.dtype)
            dw_in = _dot_t(xi, dh, 0, 0)
            dx = dx.at[r].add(_dot_t(dh, w_in[e], 1, 1), mode="drop")
            d_in = jax.lax.dynamic_update_index_in_dim(d_in, d_in[e] + dw_in, e, 0)
            d_out = jax.lax.dynamic_update_index_in_dim(d_out, d_out[e] + dw_out, e, 0)
            return dx, d_in, d_out, d_weight

        d_weight = _vary(jnp.zeros(rows_t.shape, acc), *refs)
        *carry, d_weight = jax.lax.fori_loop(0, num_used[level], body, (*carry, d_weight))
        d_weights.append(d_weight.reshape(-1))
    dx, d_in, d_out = carry
    return (
        _match(dx.astype(x.dtype), x),
        None,
        _match(jnp.concatenate(d_weights).astype(row_weight.dtype), row_weight),
        _match(d_in.astype(w_in.dtype), w_in),
        _match(d_out.astype(w_out.dtype), w_out),
        None,
        None,
    )


grouped_swiglu.defvjp(_grouped_fwd, _grouped_bwd)
