"""The SE-ResNet policy and the StylePolicy API that stylometry and steering build on."""

from __future__ import annotations

import dataclasses

import chess
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxstyle.chess as jc
from jaxstyle import adapters, policy
from jaxstyle.adapters import SkillConfig
from jaxstyle.model import StyleConfig, StylePolicy
from jaxstyle.policy import PolicyConfig

SMALL = PolicyConfig(blocks=2, filters=16, se_ratio=4, head_channels=4)


def real_positions():
    """Planes and legal masks of the start position and after 1. e4 (black to move)."""
    boards = [chess.Board(), chess.Board()]
    boards[1].push_uci("e2e4")
    planes = np.stack([jc.board_planes(b) for b in boards])
    legal = np.stack([jc.legal_mask(b) for b in boards])
    return planes, legal


def test_policy_logits_are_float32_over_the_vocabulary_with_illegal_moves_masked():
    net = policy.PolicyNetwork(SMALL, rngs=nnx.Rngs(0))
    planes, legal = real_positions()
    logits, value = net(jnp.asarray(planes), jnp.asarray(legal))
    assert logits.shape == (2, jc.VOCAB_SIZE) and logits.dtype == jnp.float32 and value is None
    assert np.all(np.asarray(logits)[~legal] == policy.ILLEGAL_LOGIT)
    assert np.all(np.asarray(logits)[legal] > -1e6)
    top = np.asarray(logits).argmax(-1)
    assert all(legal[i, top[i]] for i in range(2))  # the top move is always legal


def test_value_head_scores_positions_in_minus_one_to_one():
    net = policy.PolicyNetwork(dataclasses.replace(SMALL, value_head=True), rngs=nnx.Rngs(0))
    _, value = net(*map(jnp.asarray, real_positions()))
    assert value.shape == (2,) and np.all(np.abs(np.asarray(value)) <= 1)


def test_bad_planes_or_mask_shapes_raise_one_line_errors():
    net = policy.PolicyNetwork(SMALL, rngs=nnx.Rngs(0))
    planes, legal = real_positions()
    with pytest.raises(ValueError, match=r"planes must be \[batch, 18, 8, 8\]"):
        net(jnp.zeros((2, 12, 8, 8)), jnp.asarray(legal))
    with pytest.raises(ValueError, match="legal_mask must be"):
        net(jnp.asarray(planes), jnp.ones((2, 1858), bool))
    with pytest.raises(ValueError, match="se_ratio"):
        PolicyConfig(filters=16, se_ratio=5)


def test_style_policy_api_players_routing_and_sizes():
    config = StyleConfig(num_players=5, policy=SMALL, skills=SkillConfig(num_skills=4, num_heads=2))
    model = StylePolicy(config, rngs=nnx.Rngs(0))
    assert model.num_players == 5 and model.num_layers == 2 * SMALL.blocks
    assert model.routing_size == 8 and model.style_vectors().shape == (5, 8)
    rng = np.random.default_rng(0)
    for _, leaf in nnx.iter_graph(model):  # distinct non-zero skills, so mixing matters
        if isinstance(leaf, adapters.Skill):
            leaf[...] = jnp.asarray(rng.normal(0, 0.3, leaf.shape), jnp.float32)
    planes, legal = map(jnp.asarray, real_positions())
    ids = jnp.array([1, 3])
    by_id = model(planes, legal, players=ids)
    by_vector = model(planes, legal, routing=model.style_vectors()[ids])
    chex.assert_trees_all_close(by_id, by_vector)
    override = model(planes, legal, players=ids, routing=jnp.full((2, 8), 4.0) * jnp.arange(8))
    assert float(jnp.abs(override - by_id).max()) > 1e-4  # routing wins over players
    base = model(planes, legal)
    assert float(jnp.abs(base - by_id).max()) > 1e-4


def test_style_policy_rejects_unknown_players_and_wrong_sized_style_vectors():
    model = StylePolicy(StyleConfig(num_players=5, policy=SMALL), rngs=nnx.Rngs(0))
    planes, legal = map(jnp.asarray, real_positions())
    with pytest.raises(ValueError, match="player id 5 is out of range: the style table has 5"):
        model(planes, legal, players=jnp.array([0, 5]))
    with pytest.raises(ValueError, match="player id -1 is out of range"):
        model(planes, legal, players=jnp.array([-1, 0]))
    with pytest.raises(ValueError, match=r"style vectors must be \[batch, 32\] for this model"):
        model(planes, legal, routing=jnp.zeros((2, 31)))
    with pytest.raises(ValueError, match="3 style vectors for a batch of 2"):
        model(planes, legal, routing=jnp.zeros((3, 32)))


def test_per_layer_routing_multiplies_the_style_vector_by_the_adapted_layers():
    skills = SkillConfig(num_skills=4, num_heads=2, shared_routing=False)
    config = StyleConfig(num_players=2, policy=SMALL, skills=skills, adapt="blocks+head")
    model = StylePolicy(config, rngs=nnx.Rngs(0))
    assert model.num_layers == 2 * SMALL.blocks + 1
    assert model.routing_size == model.num_layers * 8
    planes, legal = map(jnp.asarray, real_positions())
    assert model(planes, legal, players=jnp.array([0, 1])).shape == (2, jc.VOCAB_SIZE)


def test_from_to_head_scores_each_move_by_its_two_squares_features():
    net = policy.PolicyNetwork(dataclasses.replace(SMALL, head="from_to"), rngs=nnx.Rngs(0))
    net.policy_bias[...] = jnp.asarray(np.random.default_rng(1).normal(size=jc.VOCAB_SIZE))
    planes, legal = real_positions()
    x = jnp.transpose(jnp.asarray(planes, jnp.float32), (0, 2, 3, 1))
    x = jax.nn.relu(net.stem_norm(net.stem(x)))
    for block in net.blocks:
        x = block(x)
    q = np.asarray(net.policy_from(x)).reshape(2, 64, SMALL.head_channels)
    k = np.asarray(net.policy_to(x)).reshape(2, 64, SMALL.head_channels)
    bias = np.asarray(net.policy_bias[...])
    logits = np.asarray(net(jnp.asarray(planes), jnp.asarray(legal))[0])
    for b in range(2):  # white to move, then black (its moves mirrored to white's frame)
        for index in np.flatnonzero(legal[b]):
            move = chess.Move.from_uci(jc.MOVE_VOCAB[index])  # the mover's frame
            want = q[b, move.from_square] @ k[b, move.to_square] / 2.0 + bias[index]
            np.testing.assert_allclose(logits[b, index], want, rtol=1e-4, atol=1e-4)
    assert np.all(logits[~legal] == policy.ILLEGAL_LOGIT)
    with pytest.raises(ValueError, match="PolicyConfig.head"):
        PolicyConfig(head="attention")
