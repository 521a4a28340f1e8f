"""Expert parallelism (shard_map + all_to_all) equals the single-device layer."""

import json

import jax
import numpy as np
import pytest

from tests.jaxmoe import layer_setup
from tests.jaxmoe import reference as ref
from tests.jaxmoe.layer_setup import E, K
from tests.multiprocess import run_distributed

B, S = 8, 16


def _setup(**kw):
    return layer_setup.setup(B, S, **kw)


def _run(cfg, params, x, cot, mesh):
    """``(y, aux, grads)``."""
    y, grads, aux = layer_setup.run(cfg, params, x, cot, mesh)
    return y, aux, grads


@pytest.mark.parametrize("shape", [(1, 8), (2, 4), (8, 1)], ids=["1x8", "2x4", "8x1"])
@pytest.mark.parametrize(
    "kw",
    [
        {"losses": {"simbal": 0.1, "lbl": 0.01, "z_loss": 1e-3}, "tile_size": 16},
        {"dispatch": "capacity", "capacity_factor": E / K, "losses": ("lbl",)},
    ],
    ids=["dropless", "capacity"],
)
def test_expert_parallel_layer_equals_single_device_with_gradients(shape, kw):
    cfg, params, x, cot = _setup(**kw)
    mesh = jax.make_mesh(shape, ("data", "expert"))
    y1, aux1, g1 = _run(cfg, params, x, cot, None)
    y8, aux8, g8 = _run(cfg, params, x, cot, mesh)
    np.testing.assert_allclose(np.asarray(y8), np.asarray(y1), rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(g8), jax.tree.leaves(g1)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    for name in ("tokens_per_expert", "seu", "max_vio", "routing_entropy", "dropped_fraction"):
        np.testing.assert_allclose(
            np.asarray(aux8.metrics[name]), np.asarray(aux1.metrics[name]), rtol=1e-5
        )
    for name, value in aux1.losses.items():
        assert float(aux8.losses[name]) == pytest.approx(float(value), rel=1e-5)


def test_expert_parallel_capacity_is_per_device_and_drops_like_the_reference():
    cfg, params, x, cot = _setup(dispatch="capacity", capacity_factor=1.0, losses=())
    y, aux, _ = _run(cfg, params, x, cot, jax.make_mesh((2, 4), ("data", "expert")))
    kernel = np.asarray(params.router_kernel, np.float64)
    w = [np.asarray(a, np.float64) for a in (params.w_gate, params.w_up, params.w_down)]
    cap = int(np.ceil(1.0 * S * K / E))  # one sequence per device
    want, dropped = [], 0
    for xd in np.asarray(x):
        ids, _, _ = ref.route(xd, kernel, K)
        keep = ref.capacity_keep(ids, E, cap)
        dropped += (~keep).sum()
        want.append(ref.moe(xd, kernel, *w, K, keep=keep))
    assert dropped > 0
    assert float(aux.metrics["dropped_fraction"]) == pytest.approx(dropped / (B * S * K))
    np.testing.assert_allclose(np.asarray(y), np.stack(want), rtol=2e-4, atol=2e-5)


def test_expert_choice_expert_parallel_equals_single_device():
    cfg, params, x, cot = _setup(routing="expert_choice", losses=())
    mesh = jax.make_mesh((2, 4), ("data", "expert"))
    y1, _, g1 = _run(cfg, params, x, cot, None)
    y8, _, g8 = _run(cfg, params, x, cot, mesh)
    np.testing.assert_allclose(np.asarray(y8), np.asarray(y1), rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(g8), jax.tree.leaves(g1)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_small_expert_parallel_blocks_drop_the_overflow_and_count_it():
    cfg, params, x, cot = _setup(ep_buffer_factor=1.0, losses=())
    mesh = jax.make_mesh((1, 8), ("data", "expert"))
    y, aux, _ = _run(cfg, params, x, cot, mesh)
    kernel = np.asarray(params.router_kernel, np.float64)
    w = [np.asarray(a, np.float64) for a in (params.w_gate, params.w_up, params.w_down)]
    block = int(np.ceil(1.0 * S * K / 8))  # rows per (source, destination) pair
    want, dropped = [], 0
    for xd in np.asarray(x):  # one sequence per device; expert e lives on device e
        ids, _, _ = ref.route(xd, kernel, K)
        keep = np.zeros_like(ids, bool)
        for e in range(E):
            flat = np.flatnonzero(ids.ravel() == e)[:block]  # sender keeps its first rows
            keep.ravel()[flat] = True
        dropped += (~keep).sum()
        want.append(ref.moe(xd, kernel, *w, K, keep=keep))
    assert dropped > 0
    assert float(aux.metrics["dropped_fraction"]) == pytest.approx(dropped / (B * S * K))
    np.testing.assert_allclose(np.asarray(y), np.stack(want), rtol=2e-4, atol=2e-5)


WORKER = """
import json
import jaxcommon
jaxcommon.initialize_from()
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
from jax.experimental import multihost_utils
import jaxmoe

cfg = jaxmoe.MoEConfig(d_model=16, num_experts=8, top_k=2, d_expert=8,
                       losses={"simbal": 0.1, "lbl": 0.01})
mesh = jaxcommon.make_mesh({"data": 2, "expert": 4})
layer = jaxmoe.MoELayer(cfg, rngs=nnx.Rngs(0), mesh=mesh)
local = jaxmoe.MoELayer(cfg, rngs=nnx.Rngs(0))
rng = np.random.default_rng(1)
x_np = rng.normal(size=(8, 16, 16)).astype(np.float32)
cot = rng.normal(size=(8, 16, 16)).astype(np.float32)

def grads(params, x, mesh):
    def loss(p, x):
        y, aux = jaxmoe.moe_forward(p, x, cfg, mesh=mesh)
        return jnp.sum(y * cot) + aux.loss, y
    return jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(params, x)

sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(("data", "expert")))
x = jax.make_array_from_callback(x_np.shape, sharding, lambda idx: x_np[idx])
g8, y8 = grads(layer.params(), x, mesh)
g1, y1 = grads(local.params(), jnp.asarray(x_np), None)
gather = lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True))
dy = float(np.max(np.abs(gather(y8) - np.asarray(y1))))
dg = max(float(np.max(np.abs(gather(a) - np.asarray(b))))
         for a, b in zip(jax.tree.leaves(g8), jax.tree.leaves(g1)))
print(json.dumps({"pid": jax.process_index(), "devices": jax.device_count(), "dy": dy, "dg": dg,
                  "scale": float(np.max(np.abs(np.asarray(y1))))}))
"""


@pytest.mark.multiprocess
def test_two_process_expert_parallel_layer_equals_single_device():
    outputs = run_distributed(WORKER, num_processes=2, local_devices=4)
    results = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    assert sorted(r["pid"] for r in results) == [0, 1]
    for r in results:
        assert r["devices"] == 8
        assert r["scale"] > 0.1
        assert r["dy"] < 1e-5 and r["dg"] < 1e-4
