"""Auxiliary losses: formulas against NumPy, normalisation, gradients, config combinations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmoe import (
    MoEConfig,
    MoELayer,
    load_balancing_loss,
    router_z_loss,
    sequence_routing_stats,
    simbal_loss,
)
from tests.jaxmoe import reference as ref

RNG = np.random.default_rng(0)


def test_simbal_is_the_sum_of_absolute_entries_of_the_column_gram_minus_identity():
    kernel = RNG.normal(size=(16, 8)).astype(np.float32)  # [d_model, E]
    want = np.abs(kernel.T.astype(np.float64) @ kernel - np.eye(8)).sum()
    assert float(simbal_loss(jnp.asarray(kernel))) == pytest.approx(want, rel=1e-5)
    q, _ = np.linalg.qr(RNG.normal(size=(16, 8)))
    assert float(simbal_loss(jnp.asarray(q, jnp.float32))) < 1e-5


def test_simbal_gradient_matches_the_analytic_form():
    kernel = RNG.normal(size=(16, 8)).astype(np.float32)
    sign = np.sign(kernel.T @ kernel - np.eye(8))
    want = kernel @ (sign + sign.T)  # d/dR Σ|RᵀR − I|
    got = jax.grad(simbal_loss)(jnp.asarray(kernel))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_load_balancing_loss_is_per_sequence_and_equals_k_at_perfect_balance():
    ids = RNG.integers(0, 8, size=(3, 20, 2))
    probs = ref.softmax(RNG.normal(size=(3, 20, 8)))
    f, p = sequence_routing_stats(jnp.asarray(ids), jnp.asarray(probs, jnp.float32))
    want = np.mean(
        [
            8 * sum((ids[b] == e).sum() / 20 * probs[b, :, e].mean() for e in range(8))
            for b in range(3)
        ]
    )
    assert float(load_balancing_loss(f, p)) == pytest.approx(want, rel=1e-5)
    even = jnp.full((1, 8), 2 / 8)  # k=2 experts per token spread evenly, uniform router
    assert float(load_balancing_loss(even, jnp.full((1, 8), 1 / 8))) == pytest.approx(2.0)


def test_router_z_loss_matches_numpy():
    logits = RNG.normal(size=(4, 5, 8)) * 3
    lse = np.log(np.exp(logits).sum(-1))
    assert float(router_z_loss(jnp.asarray(logits, jnp.float32))) == pytest.approx(
        np.mean(lse**2), rel=1e-5
    )


@pytest.mark.parametrize(
    "losses",
    [(), ("simbal",), {"lbl": 0.02}, {"simbal": 0.1, "lbl": 0.01, "z_loss": 1e-3}],
    ids=["none", "simbal", "lbl", "all"],
)
def test_layer_adds_exactly_the_configured_losses(losses):
    cfg = MoEConfig(d_model=16, num_experts=8, top_k=2, d_expert=8, losses=losses)
    layer = MoELayer(cfg, rngs=nnx.Rngs(0))
    layer.router_kernel[...] = layer.router_kernel[...] * 1.5  # make SimBal non-zero
    x = jnp.asarray(RNG.normal(size=(2, 16, 16)), jnp.float32)
    _, aux = layer(x)
    assert set(aux.losses) == set(cfg.loss_coefs)
    total = sum(cfg.loss_coefs[n] * float(v) for n, v in aux.losses.items())
    assert float(aux.loss) == pytest.approx(total, rel=1e-6, abs=1e-9)
    if "simbal" in aux.losses:
        assert float(aux.losses["simbal"]) == pytest.approx(
            float(simbal_loss(layer.router_kernel[...])), rel=1e-6
        )


def test_simbal_gradient_reaches_only_the_router_kernel():
    cfg = MoEConfig(d_model=16, num_experts=8, top_k=2, d_expert=8, losses=("simbal",))
    layer = MoELayer(cfg, rngs=nnx.Rngs(0))
    layer.router_kernel[...] = layer.router_kernel[...] * 1.5
    x = jnp.asarray(RNG.normal(size=(2, 16, 16)), jnp.float32)
    grads = nnx.grad(lambda m: m(x)[1].loss)(layer)
    assert float(jnp.abs(grads["router_kernel"][...]).sum()) > 0
    for name in ("w_gate_up", "w_down"):
        assert float(jnp.abs(grads[name][...]).sum()) == 0.0
