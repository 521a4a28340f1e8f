"""Grouped-matmul backends and expert-parallel exchanges all equal the tiled CPU path.

On CPU ``ragged_dot`` lowers to a padded dense matmul and megablox runs its Pallas TPU
kernel with ``interpret=True``: both are correct, only slow, so small shapes prove
outputs **and** gradients equal to the tiled loop.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmoe import MoEConfig
from jaxmoe.grouped import grouped_matmul, resolve_backend, row_padding
from jaxmoe.parallel import resolve_exchange
from tests.jaxmoe import layer_setup

B, S = 8, 8


def _setup(**kw):
    return layer_setup.setup(B, S, **kw)


def _run(cfg, params, x, cot, mesh=None, prune_threshold=None):
    """``(y, grads, metrics)``."""
    y, grads, aux = layer_setup.run(cfg, params, x, cot, mesh, prune_threshold)
    return y, grads, aux.metrics


@pytest.fixture(scope="module")
def tiled_pruned():
    """The tiled layer's outputs and gradients with dynamic-k pruning at 0.2."""
    cfg, params, x, cot = _setup(losses=("lbl",), grouped_matmul="tiled", tile_size=8)
    return cfg, params, x, cot, _run(cfg, params, x, cot, prune_threshold=0.2)


@pytest.mark.parametrize("backend", ["ragged_dot", "megablox"])
def test_backend_outputs_and_gradients_equal_tiled_with_pruned_rows(backend, tiled_pruned):
    cfg, params, x, cot, (y0, g0, p0) = tiled_pruned
    other = MoEConfig(**{**cfg.__dict__, "grouped_matmul": backend, "losses": cfg.losses})
    y1, g1, p1 = _run(other, params, x, cot, prune_threshold=0.2)
    assert 0 < float(p0["pruned_fraction"]) == float(p1["pruned_fraction"])  # rows in no group
    chex.assert_trees_all_close(y1, y0, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(g1, g0, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def single_device():
    """The single-device tiled layer's outputs and gradients (no auxiliary loss)."""
    cfg, params, x, cot = _setup(losses=(), grouped_matmul="tiled", tile_size=8)
    return cfg, params, x, cot, _run(cfg, params, x, cot)


@pytest.mark.parametrize(
    ("backend", "exchange", "shape"),
    [
        ("tiled", "ragged_emulated", (2, 4)),
        ("ragged_dot", "ragged_emulated", (2, 4)),
        ("megablox", "padded", (1, 2)),  # interpret mode is slow: 2 devices suffice
    ],
)
def test_expert_parallel_backends_and_exchanges_equal_single_device_tiled(backend, exchange, shape):
    cfg, params, x, cot = _setup(losses=("simbal",), grouped_matmul="tiled", tile_size=8)
    ep = MoEConfig(
        **{**cfg.__dict__, "grouped_matmul": backend, "ep_exchange": exchange, "losses": ()}
    )
    y0, g0, _ = _run(MoEConfig(**{**cfg.__dict__, "losses": ()}), params, x, cot)
    devices = jax.devices()[: shape[0] * shape[1]]
    mesh = jax.make_mesh(shape, ("data", "expert"), devices=devices)
    y1, g1, _ = _run(ep, params, x, cot, mesh=mesh)
    chex.assert_trees_all_close(y1, y0, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(g1, g0, rtol=1e-4, atol=1e-5)


def test_emulated_ragged_exchange_drops_like_the_padded_one_with_small_blocks():
    cfg, params, x, cot = _setup(losses=(), ep_buffer_factor=1.0, ep_exchange="padded")
    ragged = MoEConfig(**{**cfg.__dict__, "ep_exchange": "ragged_emulated", "losses": ()})
    mesh = jax.make_mesh((1, 8), ("data", "expert"))
    y0, g0, m0 = _run(cfg, params, x, cot, mesh=mesh)
    y1, g1, m1 = _run(ragged, params, x, cot, mesh=mesh)
    assert 0 < float(m1["dropped_fraction"]) == float(m0["dropped_fraction"])
    chex.assert_trees_all_close(y1, y0, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(g1, g0, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", ["ragged_dot", "megablox"])
def test_grouped_matmul_matches_numpy_per_group_and_zeroes_rows_past_the_groups(backend):
    rng = np.random.default_rng(0)
    sizes = np.array([5, 0, 9, 2], np.int32)  # 16 rows in groups, the rest in none
    m = row_padding(backend, 24)
    lhs = rng.normal(size=(m, 16)).astype(np.float32)
    rhs = rng.normal(size=(4, 16, 8)).astype(np.float32)
    got = np.asarray(
        grouped_matmul(jnp.asarray(lhs), jnp.asarray(rhs), jnp.asarray(sizes), backend)
    )
    want = np.zeros((m, 8), np.float32)
    start = 0
    for g, n in enumerate(sizes):
        want[start : start + n] = lhs[start : start + n] @ rhs[g]
        start += n
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_auto_picks_tiled_on_cpu_ragged_dot_on_gpu_megablox_on_tpu():
    assert resolve_backend("auto") == "tiled"  # the tests run on CPU
    assert [resolve_backend("auto", p) for p in ("cpu", "gpu", "tpu")] == [
        "tiled",
        "ragged_dot",
        "megablox",
    ]
    assert resolve_backend("megablox", "cpu") == "megablox"  # explicit choice wins
    assert [resolve_exchange("auto", p) for p in ("cpu", "gpu", "tpu")] == [
        "padded",
        "ragged",
        "ragged",
    ]


def test_ragged_exchange_on_cpu_raises_one_clear_error():
    with pytest.raises(ValueError, match="XLA:CPU does not implement"):
        resolve_exchange("ragged", "cpu")


def test_megablox_rejects_float64_with_a_clear_error():
    with jax.enable_x64(True):
        lhs = jnp.zeros((8, 4), jnp.float64)
        with pytest.raises(ValueError, match="megablox' supports float32 and bfloat16"):
            grouped_matmul(lhs, jnp.zeros((2, 4, 4), jnp.float64), jnp.array([4, 4]), "megablox")
