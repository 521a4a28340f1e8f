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

* ``dropless_plan``: sort assignments by expert; each expert's group fills whole big
  tiles, and its remainder small tiles (``TileLayout``), so padding stays below one
  small tile per expert. Nothing is dropped.
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
    """Static shape of a two-level tiled buffer (hashable: a ``grouped_swiglu`` argument).

    Each group's first ``big·⌊n/big⌋`` rows fill whole big tiles; the remainder
    (< big rows) fills small tiles. Padding is then below ``small`` rows per group
    instead of below ``big``, while most rows still run in the efficient big tiles.

    Attributes:
      big, num_big: rows per big tile and the static number of big tiles.
      small, num_small: the same for small tiles, which come after all big tiles.
    """

    big: int
    num_big: int
    small: int
    num_small: int

    @property
    def num_rows(self) -> int:
        return self.big * self.num_big + self.small * self.num_small

    @property
    def num_tiles(self) -> int:
        return self.num_big + self.num_small


def tile_layout(num_rows: int, num_groups: int, tile: int) -> TileLayout:
    """Static layout for at most ``num_rows`` rows in ``num_groups`` groups.

    Big tiles have ``tile`` rows, small tiles ``tile // 4`` (at least 8; with ``tile <= 8``
    both levels have 8 rows). Bounds: ``Σ ⌊n_g/big⌋ ≤ num_rows/big``; each group's remainder
    needs at most ``⌈(big−1)/small⌉`` small tiles, and all of them together at most
    ``(num_rows + G·(small−1)) / small``.
    """
    small = max(8, (tile // 4) // 8 * 8)
    num_big = max(1, num_rows // tile)
    per_group = -(-(tile - 1) // small)
    num_small = max(1, min(num_groups * per_group, (num_rows + num_groups * (small - 1)) // small))
    return TileLayout(tile, num_big, small, num_small)


class TilePlan(NamedTuple):
    """Where each group's rows sit in a ``TileLayout`` buffer.

    Attributes:
      tile_expert: ``[num_big + num_small]`` int32 group of each tile (big tiles first;
        tiles past ``num_used`` repeat the last group and are skipped).
      num_used: ``[2]`` int32 big and small tiles that hold rows; only these are computed.
      big_offset: ``[G]`` int32 first row of each group's big tiles.
      big_rows: ``[G]`` int32 rows of each group in big tiles (a multiple of ``big``).
      small_offset: ``[G]`` int32 first row of each group's small tiles.
    """

    tile_expert: jax.Array
    num_used: jax.Array
    big_offset: jax.Array
    big_rows: jax.Array
    small_offset: jax.Array

    def slot(self, group: jax.Array, rank: jax.Array) -> jax.Array:
        """Buffer row of the ``rank``-th row of ``group`` (both int32 arrays, same shape)."""
        big_rows = take_rows(self.big_rows, group)
        return jnp.where(
            rank < big_rows,
            take_rows(self.big_offset, group) + rank,
            take_rows(self.small_offset, group) + rank - big_rows,
        )

    def rows_computed(self, layout: TileLayout) -> jax.Array:
        """Rows the grouped matmul runs (tile padding included)."""
        return self.num_used[0] * layout.big + self.num_used[1] * layout.small


def _tile_groups(tiles_per_group: jax.Array, num_tiles: int) -> tuple[jax.Array, jax.Array]:
    end = jnp.cumsum(tiles_per_group)
    ids = jnp.searchsorted(end, jnp.arange(num_tiles, dtype=jnp.int32), side="right")
    return jnp.minimum(ids, tiles_per_group.shape[0] - 1).astype(jnp.int32), end - tiles_per_group


def plan_tiles(group_sizes: jax.Array, layout: TileLayout) -> TilePlan:
    """Lays out groups of ``group_sizes [G]`` rows, in group order, on ``layout``."""
    big, small = layout.big, layout.small
    n_big = group_sizes // big
    n_small = (group_sizes - n_big * big + small - 1) // small
    big_expert, big_start = _tile_groups(n_big, layout.num_big)
    small_expert, small_start = _tile_groups(n_small, layout.num_small)
    return TilePlan(
        tile_expert=jnp.concatenate([big_expert, small_expert]),
        num_used=jnp.stack([jnp.sum(n_big), jnp.sum(n_small)]).astype(jnp.int32),
        big_offset=(big_start * big).astype(jnp.int32),
        big_rows=(n_big * big).astype(jnp.int32),
        small_offset=(big * layout.num_big + small_start * small).astype(jnp.int32),
    )


def choose_tile(num_assignments: int, num_experts: int, tile_size: int | None) -> int:
    """Big-tile rows: the configured size, else the power of two ≤ A/(4E) in [8, 256].

    256-row tiles keep the CPU matmuls efficient (smaller tiles measured slower per row
    at d_model=256); small tiles (a quarter of that) absorb each group's remainder.
    """
    if tile_size is not None:
        return tile_size
    per_expert = max(1, num_assignments // (4 * num_experts))
    return int(min(256, max(8, 2 ** math.floor(math.log2(per_expert)))))


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
    """Sort-based dropless layout: experts in order, each group in big then small tiles.

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
