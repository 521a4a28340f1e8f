"""Dispatch plans and the dropless grouped kernel."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmoe import (
    capacity_plan,
    combine_outputs,
    dispatch_tokens,
    dropless_plan,
    grouped_swiglu,
    sorted_plan,
)
from jaxmoe.dispatch import level_sizes, row_tokens, row_weights, tile_layout
from tests.jaxmoe import reference as ref

E, D, F = 4, 8, 6


def _ids(tokens=24, k=2, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(E, size=k, replace=False) for _ in range(tokens)]).astype(np.int32)


def _tiles_per_level(n, sizes):
    """NumPy reference: top tiles, then the binary digits of the rounded-up remainder."""
    top, s = sizes[0], sizes[-1]
    n_top, units = n // top, -(-(n % top) // s)
    if units * s >= top:
        n_top, units = n_top + 1, 0
    return [n_top] + [(units // (size // s)) % 2 for size in sizes[1:]]


def test_level_sizes_halve_down_to_an_eighth_of_the_top_tile():
    assert level_sizes(512) == (512, 256, 128, 64)
    assert level_sizes(32) == (32, 16, 8) and level_sizes(8) == (8,)
    assert level_sizes(24) == (24, 16, 8)  # lower levels s·2^j < top still sum to ≥ top − s


@pytest.mark.parametrize("tile", [8, 24, 32])
def test_dropless_plan_places_every_assignment_once_in_its_experts_tiles(tile):
    ids = _ids(tokens=60)
    layout = tile_layout(ids.size, E, tile)
    plan = dropless_plan(jnp.asarray(ids), E, layout)
    slots, rows = np.asarray(plan.slots), np.asarray(plan.row_assign)
    assert rows.shape[0] == layout.num_rows
    assert len(set(slots.ravel())) == ids.size  # one row per assignment
    np.testing.assert_array_equal(rows[slots.ravel()], np.arange(ids.size))
    counts = np.bincount(ids.ravel(), minlength=E)
    np.testing.assert_array_equal(np.asarray(plan.counts), counts)
    # The row -> tile map: the levels one after another, each cut into its tiles.
    tile_of_row, live = np.zeros(layout.num_rows, np.int64), np.zeros(layout.num_rows, bool)
    per_level = np.array([_tiles_per_level(c, layout.sizes) for c in counts])  # [E, L]
    for level, (size, count, row0, tile0) in enumerate(layout.levels()):
        r = np.arange(row0, row0 + size * count)
        tile_of_row[r] = tile0 + (r - row0) // size
        live[r] = (r - row0) // size < per_level[:, level].sum()
    tile_expert = np.asarray(plan.tiles.tile_expert)
    np.testing.assert_array_equal(tile_expert[tile_of_row[slots]], ids)
    np.testing.assert_array_equal(np.asarray(plan.tiles.num_used), per_level.sum(axis=0))
    assert np.all(per_level[:, 1:] <= 1)  # at most one tile per lower level and expert
    assert np.all(rows[~live] == ids.size)  # rows of unused tiles are empty
    padding = int(plan.tiles.rows_computed(layout)) - ids.size
    assert 0 <= padding < E * layout.sizes[-1]  # below one smallest tile per expert


def test_capacity_plan_drops_overflow_in_batch_priority_order():
    ids = _ids(seed=1)
    plan = capacity_plan(jnp.asarray(ids), E, capacity=5)
    keep = ref.capacity_keep(ids, E, 5)
    slots = np.asarray(plan.slots)
    np.testing.assert_array_equal(slots < E * 5, keep)
    assert int(plan.num_dropped) == (~keep).sum() > 0
    kept = slots[keep]
    np.testing.assert_array_equal(kept // 5, ids[keep])  # row e·C + i belongs to expert e


def test_dispatch_and_combine_gradients_equal_plain_gather_and_scatter():
    ids = _ids()
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(24, D)), jnp.float32)
    gates = jnp.asarray(rng.uniform(size=(24, 2)), jnp.float32)
    plan = dropless_plan(jnp.asarray(ids), E, tile_layout(ids.size, E, 8))
    scale = jnp.asarray(rng.normal(size=(plan.row_assign.shape[0], D)), jnp.float32)

    def ours(x, g):
        return jnp.sum(combine_outputs(dispatch_tokens(x, plan) * scale, plan, g) ** 2)

    def plain(x, g):
        xs = (
            jnp.zeros((plan.row_assign.shape[0], D))
            .at[plan.slots.ravel()]
            .set(jnp.repeat(x, 2, axis=0))
        )
        ys = xs * scale
        y = jnp.einsum("tkd,tk->td", ys[plan.slots], g)
        return jnp.sum(y**2)

    for a, b in zip(jax.grad(ours, (0, 1))(x, gates), jax.grad(plain, (0, 1))(x, gates)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tile", [8, 24, 32])
def test_grouped_swiglu_matches_numpy_and_autodiff_reference(tile):
    ids = _ids(tokens=40, seed=3)
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(40, D)), jnp.float32)
    gates = jnp.asarray(rng.uniform(size=(40, 2)), jnp.float32)
    w_in = jnp.asarray(rng.normal(size=(E, D, 2 * F)) * 0.3, jnp.float32)
    w_out = jnp.asarray(rng.normal(size=(E, F, D)) * 0.3, jnp.float32)
    layout = tile_layout(ids.size, E, tile)
    plan = dropless_plan(jnp.asarray(ids), E, layout)

    def ours(x, g, w_in, w_out):
        rows, weights = row_tokens(plan), row_weights(g, plan)
        t = plan.tiles
        return grouped_swiglu(x, rows, weights, w_in, w_out, t.tile_expert, t.num_used, layout)

    xn, wi, wo = (np.asarray(a, np.float64) for a in (x, w_in, w_out))
    want = np.zeros((40, D))
    for t in range(40):
        for j in range(2):
            e = ids[t, j]
            out = ref.expert(xn[t : t + 1], wi[e, :, :F], wi[e, :, F:], wo[e])[0]
            want[t] += float(gates[t, j]) * out
    np.testing.assert_allclose(np.asarray(ours(x, gates, w_in, w_out)), want, rtol=1e-4, atol=1e-5)

    def dense(x, g, w_in, w_out):  # every expert on every token, zero gates elsewhere
        h = jnp.einsum("td,edf->tef", x, w_in)
        y = jnp.einsum("tef,efd->ted", jax.nn.silu(h[..., :F]) * h[..., F:], w_out)
        dense_g = jnp.zeros((40, E)).at[jnp.arange(40)[:, None], ids].set(g)
        return jnp.einsum("ted,te->td", y, dense_g)

    cot = jnp.asarray(rng.normal(size=(40, D)), jnp.float32)
    args = (x, gates, w_in, w_out)
    got = jax.grad(lambda *a: jnp.sum(ours(*a) * cot), (0, 1, 2, 3))(*args)
    exp = jax.grad(lambda *a: jnp.sum(dense(*a) * cot), (0, 1, 2, 3))(*args)
    for a, b in zip(got, exp):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_sorted_plan_puts_groups_back_to_back_and_gives_pruned_assignments_no_row():
    ids = _ids(tokens=20)
    ids[::3, 1] = E  # pruned (the null expert)
    plan = sorted_plan(jnp.asarray(ids), E, num_rows=48)
    slots, rows = np.asarray(plan.slots), np.asarray(plan.row_assign)
    live = ids < E
    counts = np.bincount(ids[live], minlength=E)
    np.testing.assert_array_equal(np.asarray(plan.counts), counts)
    assert np.all(slots[~live] == 48)
    starts = np.cumsum(counts) - counts
    for (t, j), e in np.ndenumerate(ids):  # each live assignment sits in its expert's run
        if e < E:
            assert starts[e] <= slots[t, j] < starts[e] + counts[e]
            assert rows[slots[t, j]] == t * 2 + j
    assert np.all(rows[live.sum() :] == ids.size)  # rows after the last group are empty
