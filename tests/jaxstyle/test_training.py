"""Training stages: what each stage trains and freezes, few-shot fitting, a sharded table."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxcommon import make_mesh
from jaxstyle import adapters, training
from jaxstyle.adapters import SkillConfig
from jaxstyle.model import StyleConfig, StylePolicy
from jaxstyle.policy import PolicyConfig

SMALL = PolicyConfig(blocks=1, filters=16, se_ratio=4, head_channels=4)
SKILLS = SkillConfig(num_skills=4, num_heads=2, rank=2)


def make_model(players: int = 6, seed: int = 0) -> StylePolicy:
    return StylePolicy(StyleConfig(players, policy=SMALL, skills=SKILLS), rngs=nnx.Rngs(seed))


def random_batch(size: int, players: int, seed: int = 0) -> dict:
    """Random 0/1 planes, ~40 legal moves per row, the played move among them."""
    rng = np.random.default_rng(seed)
    legal = rng.random((size, 1880)) < 0.02
    legal[:, 0] = True
    moves = np.array([rng.choice(np.flatnonzero(row)) for row in legal], np.int32)
    return {
        "planes": jnp.asarray(rng.integers(0, 2, (size, 18, 8, 8)), jnp.uint8),
        "legal_mask": jnp.asarray(legal),
        "move": jnp.asarray(moves),
        "player": jnp.asarray(rng.integers(0, players, size), jnp.int32),
    }


def randomise_skills(model: StylePolicy, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for _, leaf in nnx.iter_graph(model):
        if isinstance(leaf, adapters.Skill):
            leaf[...] = jnp.asarray(rng.normal(0, 0.3, leaf.shape), jnp.float32)


def test_pretraining_lowers_the_loss_and_touches_only_the_base_network():
    model = make_model()
    batch = random_batch(32, 6)
    tx = optax.adam(3e-3)
    graphdef, state = training.init_state(model, "pretrain", tx)
    step = jax.jit(training.pretrain_step(graphdef, tx))
    first = None
    new = state
    for _ in range(15):
        new, metrics = step(new, batch)
        first = first if first is not None else float(metrics["loss"])
    assert float(metrics["loss"]) < first - 0.5
    chex.assert_trees_all_equal(new["params"]["skills"], state["params"]["skills"])
    chex.assert_trees_all_equal(new["params"]["routing"], state["params"]["routing"])
    assert set(metrics) == {"loss", "accuracy", "grad_norm"}


def test_multitask_freezes_the_base_and_moves_the_table_at_twice_the_skill_rate():
    model = make_model()
    randomise_skills(model)  # so A, B and Z all receive gradients
    tx = training.multitask_optimizer(1e-3, routing_multiplier=2.0, eps=1e-12)
    graphdef, state = training.init_state(model, "multitask", tx)
    new, _ = jax.jit(training.multitask_step(graphdef, tx))(state, random_batch(32, 6))
    chex.assert_trees_all_equal(new["params"]["base"], state["params"]["base"])
    # Adam's first step moves every parameter with a gradient by exactly its learning rate.
    dz = jnp.abs(new["params"]["routing"]["style"]["logits"][...] - model.style_vectors())
    skill = (
        jax.tree.leaves(new["params"]["skills"])[0] - jax.tree.leaves(state["params"]["skills"])[0]
    )
    np.testing.assert_allclose(dz[dz > 0], 2e-3, rtol=1e-3)
    np.testing.assert_allclose(jnp.abs(skill)[jnp.abs(skill) > 0], 1e-3, rtol=1e-3)


def test_fitting_many_players_at_once_equals_fitting_each_alone():
    model = make_model()
    randomise_skills(model)
    batch = random_batch(24, 6, seed=1)
    group = np.repeat(np.arange(3), 8)
    args = (batch["planes"], batch["legal_mask"], batch["move"])
    init = np.random.default_rng(0).normal(0, 0.1, (3, model.routing_size)).astype(np.float32)
    kw = dict(steps=10, learning_rate=0.1, batch_size=None, key=jax.random.key(0))
    together = training.fit_style_vectors(model, *args, group, 3, init=init, **kw)
    rows = group == 1
    alone = training.fit_style_vectors(
        model, *(a[rows] for a in args), np.zeros(8, np.int32), 1, init=init[1:2], **kw
    )
    np.testing.assert_allclose(together[1], alone[0], atol=1e-4)  # float32 rounding only
    assert float(np.abs(together[1] - init[1]).max()) > 0.1  # and the vector did move


def test_few_shot_vectors_fit_the_players_moves_at_least_as_well_as_their_true_vectors():
    """Moves made by table rows: vectors fitted from scratch (everything else frozen) reach a
    likelihood at least as high as the generating rows', far above the base network's."""
    model = make_model()
    randomise_skills(model, seed=3)
    rng = np.random.default_rng(0)
    model.style.logits[...] = jnp.asarray(rng.normal(0, 3, (6, model.routing_size)), jnp.float32)
    batch = random_batch(192, 6, seed=2)
    players = np.asarray(batch["player"])
    data = (batch["planes"], batch["legal_mask"])
    target = training.predict(model, *data, players=players)
    fitted = training.fit_style_vectors(
        model, *data, target, players, 6, steps=60, learning_rate=0.2, key=jax.random.key(1)
    )
    nll = lambda **kw: -training.score_moves(model, *data, target, **kw)[1].mean()  # noqa: E731
    assert nll(routing=np.asarray(fitted)[players]) <= nll(players=players)
    assert nll(routing=np.asarray(fitted)[players]) < nll() - 0.2
    assert fitted.shape == (6, model.routing_size)


def test_fit_style_vectors_rejects_empty_or_out_of_range_groups():
    model = make_model()
    batch = random_batch(4, 6)
    args = (model, batch["planes"], batch["legal_mask"], batch["move"])
    kw = dict(steps=1, learning_rate=0.1, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"1 group\(s\) have no positions \(first: \[2\]\)"):
        training.fit_style_vectors(*args, np.array([0, 1, 1, 0]), 3, **kw)
    with pytest.raises(ValueError, match=r"group ids must lie in \[0, 2\)"):
        training.fit_style_vectors(*args, np.array([0, 1, 2, 0]), 2, **kw)


def test_score_moves_gives_top1_and_log_likelihood_in_fixed_batches():
    model = make_model()
    batch = random_batch(10, 6)
    top1, logp = training.score_moves(
        model, batch["planes"], batch["legal_mask"], batch["move"], batch_size=4
    )
    logits = model(batch["planes"], batch["legal_mask"])
    np.testing.assert_array_equal(top1, np.asarray(logits.argmax(-1)))
    want = np.asarray(jax.nn.log_softmax(logits))[np.arange(10), np.asarray(batch["move"])]
    np.testing.assert_allclose(logp, want, rtol=1e-5, atol=1e-5)


def test_a_47864_player_table_shards_over_8_devices_and_trains_like_one_device():
    players = 47_864
    model = make_model(players)
    randomise_skills(model)
    tx = training.multitask_optimizer(1e-3)
    graphdef, state = training.init_state(model, "multitask", tx)
    batch = random_batch(32, players, seed=4)  # players drawn across the whole table
    step = jax.jit(training.multitask_step(graphdef, tx))
    want, want_metrics = step(state, batch)

    mesh = make_mesh({"data": 8})
    shape = (players, model.routing_size)
    sharded = adapters.shard_rows(state, mesh, shape)
    put = lambda a: jax.device_put(
        a, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    )  # noqa: E731
    got, got_metrics = step(sharded, {k: put(v) for k, v in batch.items()})
    table = got["params"]["routing"]["style"]["logits"][...]
    assert table.sharding.spec == jax.sharding.PartitionSpec("data", None)
    assert {s.data.shape for s in table.addressable_shards} == {(players // 8, model.routing_size)}
    chex.assert_trees_all_close(jax.device_get(got), jax.device_get(want), atol=1e-6)
    np.testing.assert_allclose(got_metrics["loss"], want_metrics["loss"], rtol=1e-6)
    with pytest.raises(ValueError, match="cannot be split evenly over data=8"):
        adapters.shard_rows(state, mesh, (players + 1, model.routing_size))
