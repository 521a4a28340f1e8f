"""Dispatch plans: where each token copy goes in an expert buffer, and the moves there and back.

Token choice gives ``A = T·k`` *assignments* (token t, choice j), flattened as
``a = t·k + j``. A dispatch *plan* places them in a buffer of ``R`` rows:

* ``slots [T, k]``: buffer row of each assignment (``R`` = not placed: dropped/pruned);
* ``row_assign [R]``: assignment held by each buffer row (``A`` = empty row).

``dispatch_tokens`` / ``combine_outputs`` (used by the capacity path and the
expert-parallel exchange) are plain gathers whose transposes are the gathers the
other way, so forward and backward never scatter whole buffers. The dropless path
does not materialise the buffer at all: ``row_tokens`` / ``row_weights`` describe it
and ``jaxmoe.experts.grouped_swiglu`` gathers and scatter-adds tile by tile. Only
small int32 index arrays are scattered while building plans.

Plans:

* ``dropless_plan``: sort assignments by expert; each expert's group fills whole top
  tiles, and its remainder at most one tile per lower level (``TileLayout``), so
  padding stays below one smallest tile per expert. Nothing is dropped.
* ``sorted_plan``: assignments sorted by expert, groups back to back with no padding:
  the layout ``jax.lax.ragged_dot`` and megablox take (``jaxmoe.grouped``).
* ``capacity_plan``: fixed ``[E, C]`` buffer; the i-th assignment of expert e (top-1
  choices first, GShard's batch-prioritised order) goes to row ``e·C + i`` if ``i < C``,
  else it is dropped.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmoe.indexing import invert_slots, rank_within_group, take_rows
from jaxmoe.precision import accumulation_dtype


@jax.custom_vjp
def gather_rows(src: jax.Array, idx: jax.Array, inv: jax.Array) -> jax.Array:
    """``out[i] = src[idx[i]]`` (zeros where ``idx[i] >= N``), differentiable by a gather.

    Args:
      src: ``[N, d]`` rows.
      idx: ``[M]`` int32 source row of each output row (``N`` = zero row).
      inv: ``[N]`` or ``[N, m]`` int32: the output rows that read each source row
        (``M`` = none). Must be consistent with ``idx`` (each output row appears once).

    Returns:
      ``[M, d]``. The cotangent of ``src`` is ``sum_j d_out[inv[:, j]]``.
    """
    return take_rows(src, idx)


def _gather_fwd(src, idx, inv):
    return take_rows(src, idx), (idx, inv)


def _gather_bwd(res, d_out):
    idx, inv = res
    inv2 = inv.reshape(inv.shape[0], -1)
    d_src = take_rows(d_out, inv2[:, 0])
    for j in range(1, inv2.shape[1]):
        d_src = d_src + take_rows(d_out, inv2[:, j])
    return d_src, None, None


gather_rows.defvjp(_gather_fwd, _gather_bwd)


@jax.custom_vjp
def combine_rows(
    ys: jax.Array, slots: jax.Array, gates: jax.Array, row_assign: jax.Array
) -> jax.Array:
    """Weighted sum of each token's k expert outputs: ``y[t] = Σ_j gates[t,j]·ys[slots[t,j]]``.

    Args:
      ys: ``[R, d]`` expert outputs in buffer order.
      slots: ``[T, k]`` int32 buffer row per assignment (``R`` = contributes nothing).
      gates: ``[T, k]`` float32 weights.
      row_assign: ``[R]`` int32 assignment ``t·k + j`` per row (``T·k`` = empty).

    Returns:
      ``[T, d]`` in ``ys.dtype``, accumulated in at least float32. Gradients: ``d ys`` is a
      gather of ``dy`` scaled by the gates; ``d gates[t, j] = <dy[t], ys[slots[t, j]]>``.
    """
    return _combine_fwd(ys, slots, gates, row_assign)[0]


def _combine_fwd(ys, slots, gates, row_assign):
    # One gather per choice j, summed elementwise: an einsum over k becomes T tiny
    # batched dots on CPU, and a reduction over the middle axis is slow there too.
    acc = accumulation_dtype(jnp.promote_types(ys.dtype, gates.dtype))
    g = gates.astype(acc)
    y = take_rows(ys, slots[:, 0]).astype(acc) * g[:, :1]
    for j in range(1, slots.shape[1]):
        y = y + take_rows(ys, slots[:, j]).astype(acc) * g[:, j : j + 1]
    return y.astype(ys.dtype), (ys, slots, gates, row_assign)


def _combine_bwd(res, dy):
    ys, slots, gates, row_assign = res
    k = slots.shape[1]
    acc = accumulation_dtype(jnp.promote_types(ys.dtype, gates.dtype))
    dyf = dy.astype(acc)
    d_gates = jnp.stack(
        [jnp.sum(take_rows(ys, slots[:, j]).astype(acc) * dyf, axis=-1) for j in range(k)],
        axis=1,
    )
    row_gate = take_rows(gates.reshape(-1), row_assign)
    d_ys = take_rows(dy, row_assign // k) * row_gate[:, None].astype(dy.dtype)
    return d_ys.astype(ys.dtype), None, d_gates.astype(gates.dtype), None


combine_rows.defvjp(_combine_fwd, _combine_bwd)


class TileLayout(NamedTuple):
    """Static shape of a multi-level tiled buffer (hashable: a ``grouped_swiglu`` argument).

    Level 0 has tiles of ``top = sizes[0]`` rows; the lower levels halve down to the
    smallest size ``s`` (``sizes = (top, top/2, …, s)``, or ``(top, …)`` with lower levels
    ``s·2^j < top`` when ``top/s`` is not a power of two). A group of ``n`` rows fills
    ``⌊n/top⌋`` top tiles and rounds its remainder up to ``m`` units of ``s``; the remainder
    takes **at most one tile per lower level** (the binary digits of ``m``), largest first,
    or one more top tile when ``m·s = top``. Padding stays below ``s`` rows per group, and
    a group needs ``⌊n/top⌋ + popcount(m)`` tiles: far fewer than filling the remainder
    with small tiles. Tiles, not rows, carry the loop's fixed costs (per tile: slicing the
    expert's weights, accumulating its weight gradients, dispatching ~20 small ops), so
    the count of tiles is what this layout keeps low.

    Attributes:
      sizes: rows per tile of each level, descending.
      counts: static number of tiles of each level; level ``l``'s tiles come after all
        tiles of the levels before it, in the row buffer and in the tile list.
    """

    sizes: tuple[int, ...]
    counts: tuple[int, ...]

    @property
    def num_rows(self) -> int:
        return sum(size * count for size, count in zip(self.sizes, self.counts))

    @property
    def num_tiles(self) -> int:
        return sum(self.counts)

    def levels(self) -> list[tuple[int, int, int, int]]:
        """``(size, count, first_row, first_tile)`` of each level, in buffer order."""
        out, row, tile = [], 0, 0
        for size, count in zip(self.sizes, self.counts):
            out.append((size, count, row, tile))
            row, tile = row + size * count, tile + count
        return out


def level_sizes(tile: int) -> tuple[int, ...]:
    """``(tile, …, s)``: the top size, then ``s·2^j < tile`` descending.

    ``s`` is the largest of 8, 16, 32, … that divides ``tile`` and is at most
    ``max(8, tile / 8)`` (so 512 → 512, 256, 128, 64 and 8 → 8).
    """
    if tile < 8 or tile % 8:
        raise ValueError(f"tile must be a positive multiple of 8, got {tile}")
    smallest = 8
    while tile % (2 * smallest) == 0 and 2 * smallest <= max(8, tile // 8):
        smallest *= 2
    lower, size = [], smallest
    while size < tile:
        lower.append(size)
        size *= 2
    return (tile, *reversed(lower))


def tile_layout(num_rows: int, num_groups: int, tile: int) -> TileLayout:
    """Static layout for at most ``num_rows`` rows in ``num_groups`` groups (sizes ``level_sizes``).

    Bounds: a group's top tiles hold at most ``n + s − 1`` rows, so all groups need at
    most ``(num_rows + G·(s−1)) / top`` top tiles; a lower level has at most one tile per
    group, and all but a group's last lower tile are full, so at most
    ``min(G, (num_rows + G·(s−1)) / size)`` tiles.
    """
    sizes = level_sizes(tile)
    slack = num_rows + num_groups * (sizes[-1] - 1)
    counts = [max(1, slack // tile)]
    counts += [max(1, min(num_groups, slack // size)) for size in sizes[1:]]
    return TileLayout(sizes, tuple(counts))


class TilePlan(NamedTuple):
    """Where each group's rows sit in a ``TileLayout`` buffer.

    Attributes:
      tile_expert: ``[num_tiles]`` int32 group of each tile (level by level; tiles of a
        level past its ``num_used`` repeat the last group and are skipped).
      num_used: ``[L]`` int32 tiles of each level that hold rows; only these are computed.
      offset: ``[L, G]`` int32 first buffer row of each group's tiles on each level.
      begin: ``[L, G]`` int32 rank (within the group) of the group's first row on each level.
      rows: ``[L, G]`` int32 rows of each group's tiles on each level (padding included).
    """

    tile_expert: jax.Array
    num_used: jax.Array
    offset: jax.Array
    begin: jax.Array
    rows: jax.Array

    def slot(self, group: jax.Array, rank: jax.Array) -> jax.Array:
        """Buffer row of the ``rank``-th row of ``group`` (both int32 arrays, same shape)."""
        slot = jnp.zeros_like(rank)
        for offset, begin, rows in zip(self.offset, self.begin, self.rows):
            first = take_rows(begin, group)
            inside = (rank >= first) & (rank < first + take_rows(rows, group))
            slot = jnp.where(inside, take_rows(offset, group) + rank - first, slot)
        return slot

    def rows_computed(self, layout: TileLayout) -> jax.Array:
        """Rows the grouped matmul runs (tile padding included)."""
        return jnp.sum(self.num_used * jnp.asarray(layout.sizes, jnp.int32))


def _tile_groups(tiles_per_group: jax.Array, num_tiles: int) -> tuple[jax.Array, jax.Array]:
    end = jnp.cumsum(tiles_per_group)
    ids = jnp.searchsorted(end, jnp.arange(num_tiles, dtype=jnp.int32), side="right")
    return jnp.minimum(ids, tiles_per_group.shape[0] - 1).astype(jnp.int32), end - tiles_per_group


def level_tiles(group_sizes: jax.Array, sizes: tuple[int, ...]) -> list[jax.Array]:
    """``[G]`` int32 tiles of each group on each level (see ``TileLayout``)."""
    top, smallest = sizes[0], sizes[-1]
    n_top = group_sizes // top
    units = -(-(group_sizes - n_top * top) // smallest)  # remainder in units of s, ≤ top/s
    full = units * smallest >= top  # the remainder rounds up to one more top tile
    n_top = n_top + full
    units = jnp.where(full, 0, units)
    return [n_top.astype(jnp.int32)] + [
        ((units // (size // smallest)) % 2).astype(jnp.int32) for size in sizes[1:]
    ]


def plan_tiles(group_sizes: jax.Array, layout: TileLayout) -> TilePlan:
    """Lays out groups of ``group_sizes [G]`` rows, in group order, on ``layout``."""
    experts, offsets, begins, rows, used = [], [], [], [], []
    begin = jnp.zeros_like(group_sizes)
    for (size, count, row0, _), n in zip(layout.levels(), level_tiles(group_sizes, layout.sizes)):
        expert, start = _tile_groups(n, count)
        experts.append(expert)
        offsets.append(row0 + start * size)
        begins.append(begin)
        rows.append(n * size)
        used.append(jnp.sum(n))
        begin = begin + n * size
    as_i32 = lambda xs: jnp.stack(xs).astype(jnp.int32)  # noqa: E731
    return TilePlan(
        tile_expert=jnp.concatenate(experts),
        num_used=as_i32(used),
        offset=as_i32(offsets),
        begin=as_i32(begins),
        rows=as_i32(rows),
    )


def choose_tile(num_assignments: int, num_experts: int, tile_size: int | None) -> int:
    """Top-level tile rows: the configured size, else the power of two ≤ A/(2E) in [8, 512].

    With balanced routing each expert then fills about two top tiles, and its remainder
    at most one tile per lower level. Measured at d_model=512, E=32, k=4 (fwd+bwd, 1024
    rows per expert): 128-row tiles cost 1.24× a dense MLP's CPU time, 256: 1.16×,
    512: 1.10×, 1024: 1.09×, so per-tile costs, not matmul sizes, set the choice.
    """
    if tile_size is not None:
        return tile_size
    per_expert = max(1, num_assignments // (2 * num_experts))
    return int(min(512, max(8, 2 ** math.floor(math.log2(per_expert)))))


class DispatchPlan(NamedTuple):
    """Where every assignment lives in the expert buffer (see module docstring).

    Attributes:
      slots: ``[T, k]`` int32 buffer row per assignment (``num_rows`` = not placed).
      row_assign: ``[R]`` int32 assignment per buffer row (``T·k`` = empty).
      counts: ``[E]`` int32 assignments per expert before any dropping.
      num_dropped: scalar int32 assignments that were selected but not placed
        (capacity overflow; pruned assignments are not counted).
      tiles: ``TilePlan`` for the dropless layout, None for fixed capacity.
    """

    slots: jax.Array
    row_assign: jax.Array
    counts: jax.Array
    num_dropped: jax.Array
    tiles: TilePlan | None


def dropless_plan(expert_ids: jax.Array, num_experts: int, layout: TileLayout) -> DispatchPlan:
    """Sort-based dropless layout: experts in order, each group in top then lower-level tiles.

    Args:
      expert_ids: ``[T, k]`` int32 (``num_experts`` = pruned, gets no row).
      num_experts: E.
      layout: ``tile_layout(T·k, E, tile)``.

    Returns:
      A plan with ``R = layout.num_rows`` rows.
    """
    num_tokens, k = expert_ids.shape
    flat = expert_ids.reshape(-1)
    order = jnp.argsort(flat, stable=True).astype(jnp.int32)
    sorted_ids = flat[order]
    rank, counts = rank_within_group(sorted_ids, num_experts)
    num_rows = layout.num_rows
    tiles = plan_tiles(counts, layout)
    sorted_slot = jnp.where(sorted_ids < num_experts, tiles.slot(sorted_ids, rank), num_rows)
    slots = jnp.zeros_like(flat).at[order].set(sorted_slot)
    row_assign = invert_slots(slots, num_rows)
    return DispatchPlan(
        slots.reshape(num_tokens, k), row_assign, counts, jnp.zeros((), jnp.int32), tiles
    )


def sorted_plan(expert_ids: jax.Array, num_experts: int, num_rows: int) -> DispatchPlan:
    """Expert-sorted rows without tiles (for ``jax.lax.ragged_dot`` / megablox).

    Row r of the buffer holds the r-th assignment in (expert, token) order, so expert g
    owns rows ``[offset_g, offset_g + counts_g)`` with no padding between groups;
    pruned assignments get no row, and rows from ``Σ counts`` to ``num_rows`` are empty.

    Args:
      expert_ids: ``[T, k]`` int32 (``num_experts`` = pruned).
      num_experts: E.
      num_rows: R ≥ T·k (a backend may need a multiple of its row tile).

    Returns:
      A plan with ``R`` rows; ``counts`` are the group sizes.
    """
    num_tokens, k = expert_ids.shape
    flat = expert_ids.reshape(-1)
    order = jnp.argsort(flat, stable=True).astype(jnp.int32)
    sorted_ids = flat[order]
    counts = jnp.zeros((num_experts,), jnp.int32).at[sorted_ids].add(1, mode="drop")
    position = jnp.arange(flat.shape[0], dtype=jnp.int32)
    sorted_slot = jnp.where(sorted_ids < num_experts, position, num_rows)
    slots = jnp.zeros_like(flat).at[order].set(sorted_slot)
    row_assign = invert_slots(slots, num_rows)
    return DispatchPlan(
        slots.reshape(num_tokens, k), row_assign, counts, jnp.zeros((), jnp.int32), None
    )


def capacity_plan(expert_ids: jax.Array, num_experts: int, capacity: int) -> DispatchPlan:
    """GShard-style fixed-capacity layout ``[E, C]`` flattened to ``E·C`` rows.

    Assignments are served in batch-prioritised order (all first choices, then all
    second choices, ...); an expert's assignments beyond ``capacity`` are dropped.
    """
    num_tokens, k = expert_ids.shape
    priority = expert_ids.T.reshape(-1)  # choice-major: a' = j·T + t
    order = jnp.argsort(priority, stable=True).astype(jnp.int32)
    sorted_ids = priority[order]
    rank, counts = rank_within_group(sorted_ids, num_experts)
    num_rows = num_experts * capacity
    placed = (sorted_ids < num_experts) & (rank < capacity)
    sorted_slot = jnp.where(placed, sorted_ids * capacity + rank, num_rows)
    slots_prio = jnp.zeros_like(priority).at[order].set(sorted_slot)
    slots = slots_prio.reshape(k, num_tokens).T
    row_assign = invert_slots(slots.reshape(-1), num_rows)
    dropped = jnp.sum((sorted_ids < num_experts) & ~placed).astype(jnp.int32)
    return DispatchPlan(slots, row_assign, counts, dropped, None)


def capacity(num_tokens: int, top_k: int, num_experts: int, factor: float, minimum: int) -> int:
    """C = ceil(factor · tokens · k / E), at least ``minimum``, at most ``tokens``."""
    c = max(minimum, math.ceil(factor * num_tokens * top_k / num_experts))
    return int(min(c, num_tokens))


def dispatch_tokens(x: jax.Array, plan: DispatchPlan) -> jax.Array:
    """``[T, d]`` tokens → ``[R, d]`` expert buffer (empty rows are zero)."""
    k = plan.slots.shape[1]
    return gather_rows(x, plan.row_assign // k, plan.slots)


def row_weights(gates: jax.Array, plan: DispatchPlan) -> jax.Array:
    """``[T, k]`` gate weights → ``[R]`` weight of each buffer row (0 for empty rows)."""
    flat = gates.reshape(-1, 1)
    return gather_rows(flat, plan.row_assign, plan.slots.reshape(-1))[:, 0]


def row_tokens(plan: DispatchPlan) -> jax.Array:
    """``[R]`` token read by each buffer row (``T`` for empty rows)."""
    return plan.row_assign // plan.slots.shape[1]


def combine_outputs(ys: jax.Array, plan: DispatchPlan, gates: jax.Array) -> jax.Array:
    """``[R, d]`` expert outputs → ``[T, d]`` gate-weighted sums."""
    return combine_rows(ys, plan.slots, gates, plan.row_assign)
