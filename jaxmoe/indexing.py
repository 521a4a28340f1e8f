"""Integer index helpers shared by the dispatch plans and the expert-parallel exchange.

All of them work on small int32 arrays (one entry per assignment or buffer row), never
on ``[rows, d]`` activations, and all are pure and jittable. An index past the end of
the array it addresses means "nothing": ``take_rows`` reads zeros there and
``invert_slots`` drops it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def take_rows(src: jax.Array, idx: jax.Array) -> jax.Array:
    """``src[idx]`` along axis 0, with zeros where ``idx >= len(src)``.

    Args:
      src: ``[N, ...]`` any dtype.
      idx: ``[...]`` int32 row indices.

    Returns:
      ``[*idx.shape, ...]`` in ``src.dtype``.
    """
    return jnp.take(src, idx, axis=0, mode="fill", fill_value=0)


def invert_slots(slots_flat: jax.Array, num_rows: int) -> jax.Array:
    """The inverse of an injective placement: ``row_assign [num_rows]`` from ``slots [A]``.

    ``row_assign[slots[a]] = a``; rows no slot names get ``A`` ("empty"), and slots
    ``>= num_rows`` (not placed) are ignored.
    """
    num_assign = slots_flat.shape[0]
    empty = jnp.full((num_rows,), num_assign, jnp.int32)
    return empty.at[slots_flat].set(jnp.arange(num_assign, dtype=jnp.int32), mode="drop")


def rank_within_group(sorted_ids: jax.Array, num_groups: int) -> tuple[jax.Array, jax.Array]:
    """For ids sorted ascending: ``(rank of each element inside its id's run, counts [G])``.

    Args:
      sorted_ids: ``[A]`` int32, ascending; ids ``>= num_groups`` (the null expert) come
        last and are not counted (their rank is meaningless).
      num_groups: G.

    Returns:
      ``rank [A]`` int32 with ``rank[a] = a − start(sorted_ids[a])`` and ``counts [G]`` int32.
    """
    counts = jnp.zeros((num_groups,), jnp.int32).at[sorted_ids].add(1, mode="drop")
    starts = jnp.cumsum(counts) - counts
    pos = jnp.arange(sorted_ids.shape[0], dtype=jnp.int32)
    return pos - take_rows(starts, sorted_ids), counts
