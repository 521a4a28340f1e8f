"""Routing metrics against NumPy definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmoe import (
    MoEConfig,
    MoELayer,
    max_violation,
    min_over_layers,
    orthogonality_mse,
    pairwise_expert_similarity,
    routing_consistency,
    routing_entropy,
    sequence_expert_utilisation,
    unique_experts,
)
from tests.jaxmoe import reference as ref

RNG = np.random.default_rng(0)


def test_load_metrics_match_numpy():
    load = np.array([5, 0, 3, 8], np.float32)
    assert float(unique_experts(jnp.asarray(load))) == 3
    assert float(max_violation(jnp.asarray(load))) == pytest.approx((8 - 4) / 4)
    frac = np.array([[0.5, 0, 0, 1.5], [0.5, 0.5, 0.5, 0.5]], np.float32)
    assert float(sequence_expert_utilisation(jnp.asarray(frac))) == pytest.approx((0.5 + 1) / 2)


def test_entropy_and_orthogonality_match_numpy():
    probs = ref.softmax(RNG.normal(size=(10, 6)))
    want = np.mean(-(probs * np.log(probs)).sum(-1))
    assert float(routing_entropy(jnp.asarray(probs, jnp.float32))) == pytest.approx(want, rel=1e-5)
    kernel = RNG.normal(size=(12, 6))
    want = np.mean((kernel.T @ kernel - np.eye(6)) ** 2)
    assert float(orthogonality_mse(jnp.asarray(kernel, jnp.float32))) == pytest.approx(
        want, rel=1e-4
    )


def test_layer_metrics_agree_with_a_numpy_recount():
    cfg = MoEConfig(d_model=16, num_experts=8, top_k=2, d_expert=8)
    layer = MoELayer(cfg, rngs=nnx.Rngs(0))
    x = RNG.normal(size=(4, 16, 16)).astype(np.float32)
    _, aux = layer(jnp.asarray(x))
    ids, _, probs = ref.route(x.reshape(-1, 16), np.asarray(layer.router_kernel[...]), 2)
    load = np.bincount(ids.ravel(), minlength=8)
    np.testing.assert_array_equal(np.asarray(aux.metrics["tokens_per_expert"]), load)
    seu = np.mean([len(set(ids.reshape(4, 16, 2)[b].ravel())) / 8 for b in range(4)])
    assert float(aux.metrics["seu"]) == pytest.approx(seu)
    assert float(aux.metrics["max_vio"]) == pytest.approx((load.max() - load.mean()) / load.mean())
    entropy = np.mean(-(probs * np.log(probs)).sum(-1))
    assert float(aux.metrics["routing_entropy"]) == pytest.approx(entropy, rel=1e-4)
    w_in = jnp.concatenate([layer.w_gate[...], layer.w_up[...]], -1)
    pes = pairwise_expert_similarity(jnp.asarray(x[0]), w_in, layer.w_down[...])
    assert float(layer.expert_similarity(jnp.asarray(x[0]))) == pytest.approx(float(pes))


def test_pairwise_expert_similarity_matches_numpy_and_is_one_for_identical_experts():
    d, f, e = 8, 6, 4
    x = RNG.normal(size=(5, d))
    w_in = RNG.normal(size=(e, d, 2 * f))
    w_out = RNG.normal(size=(e, f, d))
    outs = np.stack([ref.expert(x, w_in[i, :, :f], w_in[i, :, f:], w_out[i]) for i in range(e)], 1)
    unit = outs / np.linalg.norm(outs, axis=-1, keepdims=True)
    cos = np.einsum("ned,nfd->nef", unit, unit)
    want = np.mean([cos[:, i, j] for i in range(e) for j in range(i + 1, e)])
    as32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    got = pairwise_expert_similarity(as32(x), as32(w_in), as32(w_out))
    assert float(got) == pytest.approx(want, rel=1e-4, abs=1e-6)
    same = np.repeat(w_in[:1], e, 0), np.repeat(w_out[:1], e, 0)
    assert float(pairwise_expert_similarity(as32(x), *map(as32, same))) == pytest.approx(1.0)
    assert float(min_over_layers([0.3, got, 0.9])) == pytest.approx(min(0.3, want))


def test_routing_consistency_finds_that_near_duplicate_tokens_share_experts():
    base = RNG.normal(size=(20, 8))
    x = np.concatenate([base, base + 1e-3 * RNG.normal(size=base.shape)])  # twins
    ids = np.concatenate([np.arange(20) % 5, np.arange(20) % 5])[:, None] * np.array([1, 0]) + (
        np.array([0, 7])
    )  # [40, 2]: twins share both experts
    out = routing_consistency(jnp.asarray(x, jnp.float32), jnp.asarray(ids), jax.random.key(0))
    assert float(out["neighbour"]) == pytest.approx(1.0)
    assert float(out["random"]) < float(out["neighbour"])
    assert float(out["ratio"]) > 1.0
