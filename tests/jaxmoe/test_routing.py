"""Routers: softmax/sigmoid top-k, float32 math, loss-free bias, expert choice, pruning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmoe import (
    expert_choice,
    loss_free_bias_update,
    router_logits,
    token_choice,
)
from tests.jaxmoe import reference as ref

RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 16)).astype(np.float32)
K = RNG.normal(size=(16, 8)).astype(np.float32) * 0.5


@pytest.mark.parametrize("gating", ["softmax", "sigmoid"])
@pytest.mark.parametrize("renormalize", [False, True])
def test_token_choice_matches_numpy_reference(gating, renormalize):
    r = token_choice(router_logits(X, K), 3, gating=gating, renormalize=renormalize)
    ids, gates, probs = ref.route(X, K, 3, gating=gating, renormalize=renormalize)
    np.testing.assert_array_equal(np.asarray(r.expert_ids), ids)
    np.testing.assert_allclose(np.asarray(r.gates), gates, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(r.probs), probs, rtol=1e-5, atol=1e-6)
    if renormalize:
        np.testing.assert_allclose(np.asarray(r.gates).sum(-1), 1.0, rtol=1e-5)


def test_router_math_is_float32_for_bfloat16_inputs():
    logits = router_logits(jnp.asarray(X, jnp.bfloat16), jnp.asarray(K, jnp.bfloat16))
    r = token_choice(logits, 2)
    assert logits.dtype == jnp.float32
    assert r.gates.dtype == jnp.float32 and r.probs.dtype == jnp.float32


def test_loss_free_bias_changes_selection_but_not_gate_values():
    logits = router_logits(X, K)
    plain = token_choice(logits, 2)
    bias = jnp.zeros(8).at[int(plain.expert_ids[0, 0])].set(-10.0)  # forbid token 0's top-1
    biased = token_choice(logits, 2, bias=bias)
    assert int(biased.expert_ids[0, 0]) != int(plain.expert_ids[0, 0])
    probs = np.asarray(plain.probs)
    chosen = np.take_along_axis(probs, np.asarray(biased.expert_ids), -1)
    np.testing.assert_allclose(np.asarray(biased.gates), chosen, rtol=1e-6)
    grad = jax.grad(lambda b: jnp.sum(token_choice(logits, 2, bias=b).gates))(bias)
    assert not np.any(np.asarray(grad))  # selection only: no gradient into the bias


def test_loss_free_bias_update_lowers_overloaded_experts():
    load = jnp.array([10.0, 2.0, 4.0, 4.0])  # mean 5
    new = loss_free_bias_update(jnp.zeros(4), load, 0.001)
    np.testing.assert_allclose(np.asarray(new), [-0.001, 0.001, 0.001, 0.001])


def test_expert_choice_takes_each_experts_top_tokens_per_sequence():
    logits = router_logits(X.reshape(2, 16, 16), K)
    idx, gates, probs = expert_choice(logits, 4)
    p = ref.softmax(X.reshape(2, 16, 16).astype(np.float64) @ K)
    for b in range(2):
        for e in range(8):
            want = np.argsort(-p[b, :, e], kind="stable")[:4]
            np.testing.assert_array_equal(np.asarray(idx[b, e]), want)
            np.testing.assert_allclose(np.asarray(gates[b, e]), p[b, want, e], rtol=1e-5)
    assert idx.shape == (2, 8, 4) and probs.shape == (2, 16, 8)


def test_dynamic_k_pruning_sends_low_weight_choices_to_the_null_expert():
    logits = router_logits(X, K)
    full = token_choice(logits, 3)
    pruned = token_choice(logits, 3, prune_threshold=0.2)
    gates = np.asarray(full.gates)
    drop = gates < 0.2
    drop[:, 0] = False  # the best expert is always kept
    assert drop.any()
    ids = np.where(drop, 8, np.asarray(full.expert_ids))
    np.testing.assert_array_equal(np.asarray(pruned.expert_ids), ids)
    np.testing.assert_allclose(np.asarray(pruned.gates), np.where(drop, 0.0, gates), rtol=1e-6)
