"""MoELayer end to end: NumPy reference, dispatch equivalence, gradients, pruning, NNX use."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxmoe import MoEConfig, MoELayer, MoEParams, RouterBias, moe_forward, simbal_loss
from tests.jaxmoe import reference as ref

B, S, D, E, K, F = 2, 16, 16, 8, 2, 8


def _layer(**kw):
    cfg = MoEConfig(d_model=D, num_experts=E, top_k=K, d_expert=F, **kw)
    return MoELayer(cfg, rngs=nnx.Rngs(0))


def _x(seed=1, batch=B):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, S, D)), jnp.float32)


def _np(layer):
    p = layer.params()
    return [np.asarray(a, np.float64) for a in (p.router_kernel, p.w_gate, p.w_up, p.w_down)]


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"gating": "sigmoid", "renormalize": True},
        {"dispatch": "capacity", "capacity_factor": E / K},
    ],
    ids=["dropless-softmax", "dropless-sigmoid-renorm", "capacity-no-drops"],
)
def test_layer_matches_numpy_reference(kw):
    layer = _layer(**kw)
    x = _x()
    y, aux = layer(x)
    kernel, wg, wu, wd = _np(layer)
    routing = {k: kw[k] for k in ("gating", "renormalize") if k in kw}
    want = ref.moe(np.asarray(x).reshape(-1, D), kernel, wg, wu, wd, K, **routing)
    np.testing.assert_allclose(np.asarray(y).reshape(-1, D), want, rtol=2e-4, atol=2e-5)
    assert float(aux.metrics["dropped_fraction"]) == 0.0


def test_capacity_drops_match_reference_and_are_reported():
    layer = _layer(dispatch="capacity", capacity_factor=0.5, min_capacity=1)
    x = _x()
    y, aux = layer(x)
    kernel, wg, wu, wd = _np(layer)
    xf = np.asarray(x).reshape(-1, D)
    ids, _, _ = ref.route(xf, kernel, K)
    capacity = int(np.ceil(0.5 * B * S * K / E))
    keep = ref.capacity_keep(ids, E, capacity)
    want = ref.moe(xf, kernel, wg, wu, wd, K, keep=keep)
    np.testing.assert_allclose(np.asarray(y).reshape(-1, D), want, rtol=2e-4, atol=2e-5)
    assert float(aux.metrics["dropped_fraction"]) == pytest.approx((~keep).mean())


def _grads(layer, x, cot, **kw):
    def loss(p, x):
        y, aux = moe_forward(p, x, layer.config, **kw)
        return jnp.sum(y * cot) + aux.loss

    return jax.jit(jax.grad(loss, argnums=(0, 1)))(layer.params(), x)


def test_dropless_matches_capacity_when_nothing_dropped():
    x = _x()
    cot = _x(seed=2)
    drop = _layer(losses=("lbl", "z_loss"), tile_size=16)  # 16-row and 8-row tiles
    cap = _layer(losses=("lbl", "z_loss"), dispatch="capacity", capacity_factor=E / K)
    np.testing.assert_allclose(np.asarray(drop(x)[0]), np.asarray(cap(x)[0]), rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(_grads(drop, x, cot)), jax.tree.leaves(_grads(cap, x, cot))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_layer_gradients_equal_an_all_experts_reference():
    layer = _layer(losses=())
    x, cot = _x(), _x(seed=2)

    def reference(p, x):  # every expert on every token, weighted by sparse gates
        xf = x.reshape(-1, D)
        probs = jax.nn.softmax(xf @ p.router_kernel)
        _, ids = jax.lax.top_k(probs, K)
        gates = (
            jnp.zeros_like(probs)
            .at[jnp.arange(xf.shape[0])[:, None], ids]
            .set(jnp.take_along_axis(probs, ids, -1))
        )
        h = jax.nn.silu(jnp.einsum("td,edf->tef", xf, p.w_gate))
        h = h * jnp.einsum("td,edf->tef", xf, p.w_up)
        y = jnp.einsum("tef,efd,te->td", h, p.w_down, gates)
        return jnp.sum(y.reshape(x.shape) * cot)

    want = jax.grad(reference, argnums=(0, 1))(layer.params(), x)
    for a, b in zip(jax.tree.leaves(_grads(layer, x, cot)), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_expert_choice_layer_matches_numpy_reference():
    layer = _layer(routing="expert_choice", capacity_factor=1.0)
    x = _x()
    y, aux = layer(x)
    kernel, wg, wu, wd = _np(layer)
    cap = S * K // E
    want = np.zeros((B, S, D))
    for b in range(B):
        xb = np.asarray(x[b], np.float64)
        probs = ref.softmax(xb @ kernel)
        for e in range(E):
            top = np.argsort(-probs[:, e], kind="stable")[:cap]
            want[b, top] += probs[top, e : e + 1] * ref.expert(xb[top], wg[e], wu[e], wd[e])
    np.testing.assert_allclose(np.asarray(y), want, rtol=2e-4, atol=2e-5)
    untouched = (np.abs(want).sum(-1) == 0).mean()
    assert float(aux.metrics["dropped_fraction"]) == pytest.approx(untouched)


def test_dynamic_k_pruning_computes_fewer_rows_and_matches_pruned_reference():
    layer = _layer(tile_size=8)
    x = _x(batch=8)
    kernel, wg, wu, wd = _np(layer)
    xf = np.asarray(x).reshape(-1, D)
    ids, gates, _ = ref.route(xf, kernel, K)
    threshold = float(np.median(gates[:, 1]))  # prunes about half of the second choices
    _, full = layer(x)
    y, pruned = layer(x, prune_threshold=threshold)
    keep = gates >= threshold
    keep[:, 0] = True
    assert float(pruned.metrics["pruned_fraction"]) == pytest.approx((~keep).mean())
    want = ref.moe(xf, kernel, wg, wu, wd, K, keep=keep)
    np.testing.assert_allclose(np.asarray(y).reshape(-1, D), want, rtol=2e-4, atol=2e-5)
    rows_needed = sum(-(-c // 8) * 8 for c in np.bincount(ids[keep], minlength=E))  # 8-row tiles
    assert float(pruned.metrics["rows_computed"]) == rows_needed
    assert rows_needed < float(full.metrics["rows_computed"])


def test_parameters_have_expert_shapes_partitioning_and_orthogonal_router():
    layer = _layer()
    assert layer.w_gate.shape == (E, D, F) and layer.w_up.shape == (E, D, F)
    assert layer.w_gate_up.shape == (E, D, 2, F) and layer.w_down.shape == (E, F, D)
    np.testing.assert_array_equal(np.asarray(layer.w_up), np.asarray(layer.w_gate_up[...][:, :, 1]))
    assert layer.w_gate_up.get_metadata("out_sharding") == ("expert", None, None, "model")
    assert layer.w_down.get_metadata("out_sharding") == ("expert", "model", None)
    assert float(simbal_loss(layer.router_kernel[...])) < 1e-4  # orthonormal columns


def test_layer_on_a_mesh_places_experts_on_the_expert_axis():
    mesh = jax.make_mesh((2, 4), ("data", "expert"))
    cfg = MoEConfig(d_model=D, num_experts=E, top_k=K, d_expert=F)
    layer = MoELayer(cfg, rngs=nnx.Rngs(0), mesh=mesh)
    spec = jax.sharding.PartitionSpec("expert", None, None, None)
    assert layer.w_gate_up[...].sharding.spec == spec
    shard = layer.w_gate_up[...].addressable_shards[0].data
    assert shard.shape == (E // 4, D, 2, F)


def test_bfloat16_compute_keeps_router_in_float32_and_stays_close():
    x = _x()
    y32, _ = _layer()(x)
    y16, aux = _layer(dtype=jnp.bfloat16)(x.astype(jnp.bfloat16))
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y16, np.float32), np.asarray(y32), atol=0.05)
    assert aux.metrics["routing_entropy"].dtype == jnp.float32


def test_loss_free_bias_is_not_a_param_and_update_rebalances():
    layer = _layer(loss_free_bias=True, bias_update_rate=0.005, losses=())
    assert isinstance(layer.router_bias, RouterBias)
    assert "router_bias" not in nnx.state(layer, nnx.Param)
    x = _x(batch=8)
    metrics = nnx.jit(lambda layer, x: layer(x)[1].metrics)
    before = metrics(layer, x)
    for _ in range(8):
        layer.update_router_bias(metrics(layer, x)["tokens_per_expert"])
    after = metrics(layer, x)
    assert float(after["max_vio"]) < 0.5 * float(before["max_vio"])


def test_training_steps_with_nnx_and_optax_reduce_a_regression_loss():
    layer = _layer(losses={"simbal": 0.1, "lbl": 0.01})
    opt = nnx.Optimizer(layer, optax.adam(1e-2), wrt=nnx.Param)
    x = _x(batch=4)
    target = jnp.tanh(x[..., ::-1])

    @nnx.jit
    def step(layer, opt):
        def loss_fn(layer):
            y, aux = layer(x)
            return jnp.mean((y - target) ** 2) + aux.loss

        loss, grads = nnx.value_and_grad(loss_fn)(layer)
        opt.update(layer, grads)
        return loss

    losses = [float(step(layer, opt)) for _ in range(15)]
    assert losses[-1] < 0.8 * losses[0]


def test_bfloat16_params_build_with_a_float32_orthogonal_init_then_cast():
    layer = _layer(param_dtype=jnp.bfloat16, dtype=jnp.bfloat16)
    p = layer.params()
    assert {a.dtype for a in jax.tree.leaves(p)} == {jnp.dtype(jnp.bfloat16)}
    r = np.asarray(p.router_kernel, np.float64)
    np.testing.assert_allclose(r.T @ r, np.eye(E), atol=2e-2)  # orthonormal up to bf16 rounding
    y, _ = layer(_x().astype(jnp.bfloat16))
    assert y.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(y)))


def test_mesh_without_expert_axis_replicates_experts_and_equals_single_device():
    mesh = jax.make_mesh((8,), ("data",))
    cfg = MoEConfig(d_model=D, num_experts=E, top_k=K, d_expert=F, losses=("lbl",))
    layer = MoELayer(cfg, rngs=nnx.Rngs(0), mesh=mesh)
    assert layer.w_gate_up[...].sharding.is_fully_replicated
    x, cot = _x(batch=8), _x(seed=2, batch=8)
    single = MoELayer(cfg, rngs=nnx.Rngs(0))
    g_mesh, g_single = _grads(layer, x, cot, mesh=mesh), _grads(single, x, cot)
    chex.assert_trees_all_close(g_mesh, g_single, rtol=1e-4, atol=1e-5)
    forward = jax.jit(lambda p, x, mesh: moe_forward(p, x, cfg, mesh=mesh)[0], static_argnums=2)
    y_mesh, y_single = forward(layer.params(), x, mesh), forward(single.params(), x, None)
    chex.assert_trees_all_close(y_mesh, y_single, rtol=1e-5, atol=1e-6)


def test_float64_inputs_compute_and_accumulate_in_float64():
    with jax.enable_x64(True):
        layer = _layer(param_dtype=jnp.float64, losses=())
        x = jnp.asarray(np.random.default_rng(1).normal(size=(B, S, D)), jnp.float64)
        y = jax.jit(lambda p, x: moe_forward(p, x, layer.config)[0])(layer.params(), x)
        assert y.dtype == jnp.float64
        kernel, wg, wu, wd = _np(layer)
        want = ref.moe(np.asarray(x).reshape(-1, D), kernel, wg, wu, wd, K)
        # float32 accumulation would leave errors near 1e-7; float64 is exact to ~1e-15.
        np.testing.assert_allclose(np.asarray(y).reshape(-1, D), want, rtol=1e-11, atol=1e-13)


def _concatenations(jaxpr) -> list[tuple[int, ...]]:
    shapes = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "concatenate":
            shapes.append(tuple(eqn.outvars[0].aval.shape))
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", value)
            if hasattr(inner, "eqns"):
                shapes += _concatenations(inner)
    return shapes


def test_gate_and_up_weights_are_stored_fused_and_never_concatenated():
    layer = _layer(losses=())
    assert "w_gate_up" in nnx.state(layer, nnx.Param) and "w_gate" not in nnx.state(layer)
    jaxpr = jax.make_jaxpr(lambda p, x: moe_forward(p, x, layer.config))(layer.params(), _x())
    assert (E, D, 2 * F) not in _concatenations(jaxpr.jaxpr)
    p = layer.params()
    np.testing.assert_array_equal(np.asarray(p.w_in[..., :F]), np.asarray(p.w_gate))
    again = MoEParams.from_split(p.router_kernel, None, p.w_gate, p.w_up, p.w_down)
    np.testing.assert_array_equal(np.asarray(again.w_gate_up), np.asarray(p.w_gate_up))


def test_router_init_warns_when_d_model_is_below_num_experts():
    cfg = MoEConfig(d_model=4, num_experts=8, top_k=2, d_expert=8)
    with pytest.warns(UserWarning, match="cannot make the expert columns orthonormal"):
        layer = MoELayer(cfg, rngs=nnx.Rngs(0))
    r = np.asarray(layer.router_kernel[...], np.float64)
    np.testing.assert_allclose(r @ r.T, np.eye(4), atol=1e-5)  # the rows are orthonormal
