"""Expert parallelism: token exchange over the ``expert`` mesh axis inside ``jax.shard_map``.

Each of the X devices on the expert axis holds ``E/X`` experts (expert e lives on
device ``e // (E/X)``) and its own share of the batch. Two exchanges:

* ``exchange_fixed``: fixed ``[E, C, d]`` buffers (capacity dispatch and expert
  choice) go through one tiled ``all_to_all`` each way (GShard).
* ``dropless_expert_parallel``: dropless. Every (source, destination) pair has a block
  of ``block_rows`` rows in the send and receive buffers. By default
  ``block_rows = T_local · min(k, E/X)``, the most rows one device can send to another,
  so nothing is ever dropped whatever the routing. ``MoEConfig.ep_buffer_factor``
  shrinks the blocks; rows past a full block are then dropped and counted. Two
  exchanges fill them (``MoEConfig.ep_exchange``):

  - ``"ragged"``: ``jax.lax.ragged_all_to_all`` sends only the rows that exist (the
    traffic of the real routing). XLA:CPU does not implement it ("HLO opcode
    ragged-all-to-all is not supported by XLA:CPU"), so it is the ``"auto"`` choice on
    GPU and TPU only.
  - ``"padded"``: one tiled ``all_to_all`` of the whole blocks (X times the worst-case
    traffic; the ``"auto"`` choice on CPU).
  - ``"ragged_emulated"``: the ragged exchange's offsets and sizes carried out by a
    padded ``all_to_all`` with the primitive's exact semantics: it lets CPU tests prove
    the ragged bookkeeping equal to the padded path (slow; for tests).

  Either way the receiving device learns the layout from per-expert counts shared by an
  ``all_gather``, and computes only the rows that arrived: the tiled backend skips
  empty tiles; ``ragged_dot`` / megablox gather the rows into expert order first.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxmoe.dispatch import choose_tile, combine_rows, gather_rows, plan_tiles, tile_layout
from jaxmoe.experts import batched_swiglu, grouped_swiglu
from jaxmoe.grouped import row_padding, sorted_swiglu
from jaxmoe.indexing import invert_slots, rank_within_group, take_rows

#: ``jax.default_backend()`` values whose XLA implements ``ragged_all_to_all``.
RAGGED_A2A_PLATFORMS = ("gpu", "cuda", "rocm", "tpu")


def resolve_exchange(name: str, platform: str | None = None) -> str:
    """The concrete exchange of a ``MoEConfig.ep_exchange`` value on ``platform``.

    Raises:
      ValueError: ``"ragged"`` requested where XLA does not implement the primitive.
    """
    platform = platform or jax.default_backend()
    if name == "auto":
        return "ragged" if platform in RAGGED_A2A_PLATFORMS else "padded"
    if name == "ragged" and platform not in RAGGED_A2A_PLATFORMS:
        raise ValueError(
            f"ep_exchange='ragged' needs jax.lax.ragged_all_to_all, which XLA:{platform.upper()} "
            "does not implement; use 'padded' or 'auto' ('ragged_emulated' checks the "
            "ragged bookkeeping on CPU)"
        )
    return name


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


def _emulated_ragged_all_to_all(operand, output, in_off, send, out_off, recv, *, axis_name):
    """``jax.lax.ragged_all_to_all`` semantics through one padded ``all_to_all`` (tests).

    Device me sends ``operand[in_off[j] : in_off[j] + send[j]]`` to device j, which writes
    it at ``output[out_off[j] :]`` (offsets in the receiver's buffer, as the primitive
    defines them); rows of ``output`` that receive nothing keep their values.
    """
    del recv  # implied by the senders' sizes, exactly as in the primitive
    rows = operand.shape[0]
    j = jnp.arange(rows, dtype=jnp.int32)
    idx = jnp.where(j[None] < send[:, None], in_off[:, None] + j[None], rows)  # [X, rows]
    blocks = take_rows(operand, idx)  # [X, rows, d]
    got = jax.lax.all_to_all(blocks, axis_name, 0, 0, tiled=True)
    meta = jnp.stack([out_off, send], axis=1)  # what I tell each receiver
    got_meta = jax.lax.all_to_all(meta, axis_name, 0, 0, tiled=True)  # [X sources, 2]
    dest = jnp.where(j[None] < got_meta[:, 1:2], got_meta[:, 0:1] + j[None], output.shape[0])
    return output.at[dest.reshape(-1)].set(got.reshape(-1, operand.shape[1]), mode="drop")


def _exchange_blocks(
    send_buf: jax.Array, send_sizes: jax.Array, recv_sizes: jax.Array, axis: str, exchange: str
) -> jax.Array:
    """Block j of ``send_buf [X·rows, d]`` → block ``me`` of device j's buffer.

    Only the first ``send_sizes[j]`` rows of block j are valid (``recv_sizes[i]`` rows
    arrive from device i); the padded exchange moves whole blocks, the ragged ones
    only the valid rows, leaving the rest of the receive buffer zero.
    """
    num_shards = send_sizes.shape[0]
    rows = send_buf.shape[0] // num_shards
    if exchange == "padded":
        blocks = send_buf.reshape(num_shards, rows, -1)
        out = jax.lax.all_to_all(blocks, axis, split_axis=0, concat_axis=0, tiled=True)
        return out.reshape(send_buf.shape)
    offsets = jnp.arange(num_shards, dtype=jnp.int32) * rows
    out_offsets = jnp.full((num_shards,), jax.lax.axis_index(axis) * rows, jnp.int32)
    fn = jax.lax.ragged_all_to_all if exchange == "ragged" else _emulated_ragged_all_to_all
    output = jnp.zeros_like(send_buf)
    return fn(send_buf, output, offsets, send_sizes, out_offsets, recv_sizes, axis_name=axis)


def _local_experts(
    xrecv: jax.Array,
    group: jax.Array,
    rank_in_group: jax.Array,
    group_sizes: jax.Array,
    w_in: jax.Array,
    w_out: jax.Array,
    backend: str,
    tile: int,
) -> tuple[jax.Array, jax.Array]:
    """Runs received rows through the local experts; returns ``(y [rows, d], rows_computed)``.

    Args:
      xrecv: ``[N, d]`` received rows (source-major blocks).
      group: ``[N]`` int32 local expert of each row (``G`` = empty row).
      rank_in_group: ``[N]`` int32 rank of the row among its expert's rows.
      group_sizes: ``[G]`` int32.
    """
    num_rows, num_groups = xrecv.shape[0], group_sizes.shape[0]
    live = group < num_groups
    group = jnp.minimum(group, num_groups - 1)
    if backend == "tiled":
        layout = tile_layout(num_rows, num_groups, tile)
        tiles = plan_tiles(group_sizes, layout)
        slot = jnp.where(live, tiles.slot(group, rank_in_group), layout.num_rows)
        tile_to_recv = invert_slots(slot.astype(jnp.int32), layout.num_rows)
        ones = jnp.ones(tile_to_recv.shape, jnp.float32)
        y = grouped_swiglu(
            xrecv, tile_to_recv, ones, w_in, w_out, tiles.tile_expert, tiles.num_used, layout
        )
        return y, tiles.rows_computed(layout)
    buf_rows = row_padding(backend, num_rows)
    start = jnp.cumsum(group_sizes) - group_sizes
    slot = jnp.where(live, take_rows(start, group) + rank_in_group, buf_rows).astype(jnp.int32)
    sorted_to_recv = invert_slots(slot, buf_rows)
    xs = gather_rows(xrecv, sorted_to_recv, slot)
    ys = sorted_swiglu(xs, group_sizes, w_in, w_out, backend)
    return gather_rows(ys, slot, sorted_to_recv), jnp.sum(group_sizes)


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
    backend: str = "tiled",
    exchange: str = "padded",
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
      tile_size: tiled grouped-matmul tile rows (None: automatic).
      backend: resolved grouped-matmul backend (``"tiled"``, ``"ragged_dot"``, ``"megablox"``).
      exchange: resolved exchange (``"padded"``, ``"ragged"``, ``"ragged_emulated"``).

    Returns:
      ``(y [T, d], counts [E] int32, num_dropped, rows_computed)`` where ``counts`` are
      this device's assignments per expert and ``rows_computed`` the rows its grouped
      matmul ran (including tile padding).
    """
    num_tokens, k = expert_ids.shape
    num_assign = num_tokens * k
    local = num_experts // num_shards
    me = jax.lax.axis_index(axis)

    # 1. Sort this device's assignments by expert, hence by destination device.
    with jax.named_scope("ep_send_plan"):
        flat = expert_ids.reshape(-1)
        order = jnp.argsort(flat, stable=True).astype(jnp.int32)
        sorted_ids = flat[order]
        _, counts = rank_within_group(sorted_ids, num_experts)
        dest = sorted_ids // local
        dest_counts = counts.reshape(num_shards, local).sum(-1)
        dest_start = jnp.cumsum(dest_counts) - dest_counts
        pos = jnp.arange(num_assign, dtype=jnp.int32) - take_rows(dest_start, dest)
        live = sorted_ids < num_experts
        placed = live & (pos < block_rows)
        num_send_rows = num_shards * block_rows
        sorted_slot = jnp.where(placed, dest * block_rows + pos, num_send_rows)
        slots = jnp.zeros_like(flat).at[order].set(sorted_slot).reshape(num_tokens, k)
        send_assign = invert_slots(slots.reshape(-1), num_send_rows)
        xsend = gather_rows(x, send_assign // k, slots)

    # 2. Share the per-expert counts so receivers know the layout, then exchange rows.
    all_counts = jax.lax.all_gather(counts, axis)  # [X sources, E]
    mine = jax.lax.dynamic_slice_in_dim(all_counts, me * local, local, axis=1)  # [X, E/X]
    ends = jnp.minimum(jnp.cumsum(mine, axis=1), block_rows)  # blocks truncated at block_rows
    sent = ends - jnp.concatenate([jnp.zeros((num_shards, 1), ends.dtype), ends[:, :-1]], 1)
    send_sizes = jnp.minimum(dest_counts, block_rows).astype(jnp.int32)
    recv_sizes = ends[:, -1].astype(jnp.int32)
    with jax.named_scope(f"ep_exchange_{exchange}"):
        xrecv = _exchange_blocks(xsend, send_sizes, recv_sizes, axis, exchange)

    # 3. Received rows (source-major blocks) → local experts.
    with jax.named_scope("ep_local_experts"):
        src = jnp.repeat(jnp.arange(num_shards, dtype=jnp.int32), block_rows)
        j = jnp.tile(jnp.arange(block_rows, dtype=jnp.int32), num_shards)
        el = jnp.minimum(jnp.sum(ends[src] <= j[:, None], axis=1), local - 1).astype(jnp.int32)
        valid = j < ends[src, -1]
        before_src = jnp.cumsum(sent, axis=0) - sent  # rows of expert el from lower sources
        rank = before_src[src, el] + j - (ends - sent)[src, el]
        tile = choose_tile(num_assign, local, tile_size)  # expected rows here: T·k on average
        yrecv, rows_computed = _local_experts(
            xrecv, jnp.where(valid, el, local), rank, sent.sum(0), w_in, w_out, backend, tile
        )

    # 4. Send results back (the same blocks the other way) and combine.
    with jax.named_scope(f"ep_return_{exchange}"):
        yback = _exchange_blocks(yrecv, recv_sizes, send_sizes, axis, exchange)
    y = combine_rows(yback, slots, gates, send_assign)
    dropped = jnp.sum(live & ~placed).astype(jnp.int32)
    return y, counts, dropped, rows_computed
