"""The reset pool: stepping without a reset per step, finished episodes restarted from a pool."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsafe import SafeguardWrapper, load_spec
from jaxsafe.envs import GRIDWORLD_LABELLER, GridWorld
from jaxsafe.resets import ResetPool, make_reset_pool, reset_finished, step_without_reset


def plain(tree):
    """Typed PRNG keys (Craftax keeps one in its state) as their raw data, for comparisons."""

    def as_data(x):
        return jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x

    return jax.tree.map(as_data, tree)


def rows(tree, idx):
    """Entries ``idx`` of every leaf's leading axis."""
    return jax.tree.map(lambda x: x[idx], tree)


def test_finished_envs_take_consecutive_pool_entries_and_the_cursor_wraps():
    pool = ResetPool(
        obs=jnp.arange(3.0)[:, None] + 100.0, state={"s": jnp.arange(3) + 10}, cursor=jnp.int32(2)
    )
    done = jnp.array([True, False, True, True])
    obs = jnp.zeros((4, 1))
    state = {"s": jnp.array([-1, -2, -3, -4])}
    new_obs, new_state, pool2 = reset_finished(done, obs, state, pool)
    # NumPy reference: the k-th finished env takes entry (cursor + k) mod 3
    want = np.array([-1, -2, -3, -4])
    k = 0
    for i in range(4):
        if done[i]:
            want[i] = 10 + (2 + k) % 3
            k += 1
    np.testing.assert_array_equal(new_state["s"], want)
    np.testing.assert_array_equal(new_obs[:, 0], np.where(done, want + 90.0, 0.0))
    assert int(pool2.cursor) == 5


def test_step_without_reset_is_gymnax_step_until_the_episode_ends():
    env = SafeguardWrapper(GridWorld(), GRIDWORLD_LABELLER, load_spec("sg3"))
    params = env.default_params
    n, steps = 16, 30
    key = jax.random.key(0)
    pool = make_reset_pool(env, params, jax.random.key(1), n)
    obs, state = pool.obs, pool.state
    ended = 0
    no_reset = jax.jit(jax.vmap(lambda *a: step_without_reset(env, *a), in_axes=(0, 0, 0, None)))
    gymnax = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    for t in range(steps):
        k_act, k_step = jax.random.split(jax.random.fold_in(key, t))
        action = jax.random.randint(k_act, (n,), 0, env.num_actions)
        keys = jax.random.split(k_step, n)
        ours = no_reset(keys, state, action, params)
        ref = gymnax(keys, state, action, params)
        done = np.asarray(ours[3] | ours[4])
        # the transition itself is gymnax's, reset or not
        chex.assert_trees_all_close(ours[2:], ref[2:])
        chex.assert_trees_all_close(ours[5]["final_observation"], ref[5]["final_observation"])
        live = ~done
        chex.assert_trees_all_close(rows(ours[:2], live), rows(ref[:2], live))
        obs, state, pool = reset_finished(jnp.asarray(done), ours[0], ours[1], pool)
        for i in np.flatnonzero(done):  # restarted from the pool, in order
            chex.assert_trees_all_close(rows(state, i), rows(pool.state, ended % n))
            ended += 1
    assert ended > 0 and int(pool.cursor) == ended


@pytest.mark.slow
def test_craftax_steps_like_craftax_and_restarts_from_the_pool_at_game_over():
    from jaxsafe.envs import make_craftax_classic

    env = make_craftax_classic()
    inner = env.env  # craftax's own no-auto-reset env
    params = env.default_params
    n = 2

    # One program, compile-bound (Craftax's world generation and two copies of its step;
    # it runs in well under a second): LLVM optimisation level 0 halves XLA's compile time.
    # Both sides of every comparison are in this one program, compiled the same way.
    @functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
    def run(key):
        pool = make_reset_pool(env, params, jax.random.fold_in(key, 1), 2 * n)
        obs, state = jax.tree.map(lambda x: x[:n], (pool.obs, pool.state))
        pool = pool._replace(cursor=jnp.int32(n))
        # game over for env 0 on the next step: health already 0
        state = state.replace(player_health=state.player_health.at[0].set(0))
        keys = jax.random.split(key, n)
        action = jnp.array([0, 5])
        ours = jax.vmap(lambda *a: step_without_reset(env, *a), in_axes=(0, 0, 0, None))(
            keys, state, action, params
        )
        step_keys = jax.vmap(lambda k: jax.random.split(k)[0])(keys)  # gymnax's key split
        theirs = jax.vmap(inner.step, in_axes=(0, 0, 0, None))(step_keys, state, action, params)
        done = ours[3] | ours[4]
        obs2, state2, _ = reset_finished(done, ours[0], ours[1], pool)
        return plain((ours, theirs, obs2, state2, pool))

    ours, theirs, obs2, state2, pool = jax.device_get(run(jax.random.key(0)))
    np.testing.assert_array_equal(ours[3], [True, False])  # terminated (game over) / not
    np.testing.assert_array_equal(ours[3], theirs[3])
    np.testing.assert_allclose(ours[2], theirs[2])
    # the non-terminal env is exactly craftax's step; the finished one restarts from the pool
    chex.assert_trees_all_close(ours[0][1], theirs[0][1])
    chex.assert_trees_all_close(rows(state2, 1), rows(theirs[1], 1))
    chex.assert_trees_all_close(rows(state2, 0), rows(pool.state, n))
    chex.assert_trees_all_close(obs2[0], pool.obs[n])
    np.testing.assert_allclose(ours[5]["final_observation"][0], theirs[0][0])
