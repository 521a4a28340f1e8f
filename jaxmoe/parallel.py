"""Expert parallelism: token exchange over the ``expert`` mesh axis inside ``jax.shard_map``.

Each of the X devices on the expert axis holds ``E/X`` experts (expert e lives on
device ``e // (E/X)``) and its own share of the batch. Two exchanges:

* ``exchange_fixed``: fixed ``[E, C, d]`` buffers (capacity dispatch and expert
  choice) go through one tiled ``all_to_all`` each way (GShard).
* ``dropless_expert_parallel``: dropless. ``jax.lax.ragged_all_to_all`` is the natural
  primitive, but XLA:CPU does not implement it ("HLO opcode ragged-all-to-all is not
  supported by XLA:CPU"), so we use the documented equivalent: a **padded
  all_to_all** of fixed blocks of ``block_rows`` rows per (source, destination) pair.
  By default ``block_rows = T_local · min(k, E/X)``, the most rows one device can send
  to another, so nothing is ever dropped whatever the routing; the cost is memory and
  traffic of X times the worst-case block (not compute: the receiving device builds
  tiles from the rows that really arrived, using counts shared by an ``all_gather``,
  and its grouped matmul skips empty tiles). ``MoEConfig.ep_buffer_factor`` shrinks
  the blocks; rows past a full block are then dropped and counted.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxmoe.dispatch import (
    _invert,
    _rank_within_group,
    _take,
    choose_tile,
    combine_rows,
    gather_rows,
    plan_tiles,
    tile_layout,
)
from jaxmoe.experts import batched_swiglu, grouped_swiglu


def exchange_fixed(
    xb: jax.Array, w_in: jax.Array, w_out: jax.Array, axis: str | None, num_shards: int
) -> jax.Array:
    """Runs ``[E, C, d]`` buffers through experts that are sharded over ``axis``.

    Args:
      xb: ``[E, C, d]`` this device's rows for every expert.
      w_in, w_out: this device's ``E/X`` experts (``[E/X, d, 2f]``, ``[E/X, f, d]``).
      axis: expert mesh axis name, or None when all experts are local.
      num_shards: X, size of ``axis``.

    Returns:
      ``[E, C, d]`` expert outputs for this device's rows.
    """
    if axis is None or num_shards == 1:
        return batched_swiglu(xb, w_in, w_out)
    num_experts, cap, d = xb.shape
    local = num_experts // num_shards
    recv = jax.lax.all_to_all(xb, axis, split_axis=0, concat_axis=0, tiled=True)
    recv = recv.reshape(num_shards, local, cap, d).transpose(1, 0, 2, 3)  # [E/X, X, C, d]
    out = batched_swiglu(recv.reshape(local, num_shards * cap, d), w_in, w_out)
    out = out.reshape(local, num_shards, cap, d).transpose(1, 0, 2, 3).reshape(xb.shape)
    return jax.lax.all_to_all(out, axis, split_axis=0, concat_axis=0, tiled=True)


def default_block_rows(
    num_tokens: int, top_k: int, local_experts: int, factor: float | None, num_shards: int
) -> int:
    """Rows per (source, destination) block of the padded dropless all_to_all."""
    worst = num_tokens * min(top_k, local_experts)
    if factor is None:
        return worst
    return int(min(worst, max(1, math.ceil(factor * num_tokens * top_k / num_shards))))


def dropless_expert_parallel(
    x: jax.Array,
    expert_ids: jax.Array,
    gates: jax.Array,
    w_in: jax.Array,
    w_out: jax.Array,
    *,
    num_experts: int,
    axis: str,
    num_shards: int,
    block_rows: int,
    tile_size: int | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Dropless MoE with experts sharded over ``axis`` (call inside ``shard_map``).

    Args:
      x: ``[T, d]`` this device's tokens.
      expert_ids: ``[T, k]`` int32 global expert ids (``num_experts`` = pruned).
      gates: ``[T, k]`` float32 gate weights.
      w_in, w_out: local experts ``[E/X, d, 2f]``, ``[E/X, f, d]``.
      num_experts: E.
      axis: expert mesh axis name; ``num_shards`` its size X.
      block_rows: rows per (source, destination) block (see module docstring).
      tile_size: grouped-matmul tile rows (None: automatic).

    Returns:
      ``(y [T, d], counts [E] int32, num_dropped, rows_computed)`` where ``counts`` are
      this device's assignments per expert and ``rows_computed`` the rows its grouped
      matmul ran (including tile padding).
    """
    num_tokens, k = expert_ids.shape
    num_assign = num_tokens * k
    local = num_experts // num_shards
    me = jax.lax.axis_index(axis)
    d = x.shape[-1]

    # 1. Sort this device's assignments by expert, hence by destination device.
    flat = expert_ids.reshape(-1)
    order = jnp.argsort(flat, stable=True).astype(jnp.int32)
    sorted_ids = flat[order]
    _, counts = _rank_within_group(sorted_ids, num_experts)
    dest = sorted_ids // local
    dest_counts = counts.reshape(num_shards, local).sum(-1)
    dest_start = jnp.cumsum(dest_counts) - dest_counts
    pos = jnp.arange(num_assign, dtype=jnp.int32) - _take(dest_start, dest)
    live = sorted_ids < num_experts
    placed = live & (pos < block_rows)
    num_send_rows = num_shards * block_rows
    sorted_slot = jnp.where(placed, dest * block_rows + pos, num_send_rows)
    slots = jnp.zeros_like(flat).at[order].set(sorted_slot).reshape(num_tokens, k)
    send_assign = _invert(slots.reshape(-1), num_send_rows)
    xsend = gather_rows(x, send_assign // k, slots)

    # 2. Exchange rows, and the per-expert counts so receivers know the layout.
    xrecv = jax.lax.all_to_all(
        xsend.reshape(num_shards, block_rows, d), axis, split_axis=0, concat_axis=0, tiled=True
    ).reshape(num_send_rows, d)
    all_counts = jax.lax.all_gather(counts, axis)  # [X sources, E]
    mine = jax.lax.dynamic_slice_in_dim(all_counts, me * local, local, axis=1)  # [X, E/X]
    ends = jnp.minimum(jnp.cumsum(mine, axis=1), block_rows)  # blocks truncated at block_rows
    sent = ends - jnp.concatenate([jnp.zeros((num_shards, 1), ends.dtype), ends[:, :-1]], 1)
    starts_in_block = ends - sent  # [X, E/X]
    group_sizes = sent.sum(0)  # [E/X]
    before_src = jnp.cumsum(sent, axis=0) - sent  # rows of expert el from lower sources

    # 3. Received rows → tiles per local expert (source-major inside each expert).
    tile = choose_tile(num_assign, local, tile_size)  # expected rows here: T·k on average
    layout = tile_layout(num_send_rows, local, tile)
    tiles = plan_tiles(group_sizes, layout)
    src = jnp.repeat(jnp.arange(num_shards, dtype=jnp.int32), block_rows)
    j = jnp.tile(jnp.arange(block_rows, dtype=jnp.int32), num_shards)
    el_c = jnp.minimum(jnp.sum(ends[src] <= j[:, None], axis=1), local - 1).astype(jnp.int32)
    valid = j < ends[src, -1]
    rank = j - starts_in_block[src, el_c]
    tile_slot = tiles.slot(el_c, before_src[src, el_c] + rank)
    recv_to_tile = jnp.where(valid, tile_slot, layout.num_rows).astype(jnp.int32)
    tile_to_recv = _invert(recv_to_tile, layout.num_rows)  # [R], num_send_rows = padding
    ones = jnp.ones(tile_to_recv.shape, jnp.float32)
    yrecv = grouped_swiglu(
        xrecv, tile_to_recv, ones, w_in, w_out, tiles.tile_expert, tiles.num_used, layout
    )

    # 4. Send results back and combine.
    yback = jax.lax.all_to_all(
        yrecv.reshape(num_shards, block_rows, d), axis, split_axis=0, concat_axis=0, tiled=True
    ).reshape(num_send_rows, d)
    y = combine_rows(yback, slots, gates, send_assign)
    dropped = jnp.sum(live & ~placed).astype(jnp.int32)
    return y, counts, dropped, tiles.rows_computed(layout)
