"""Auto-reset without a reset per step: a pool of pre-generated reset states.

gymnax's ``Environment.step`` (inherited by :class:`~jaxsafe.wrappers.SafeguardWrapper` and
:class:`~jaxsafe.envs.adapters.FiveTupleAdapter`) calls ``reset_env`` on **every** step and
selects its result where the episode ended. That is free for the gridworld but for
Craftax-Classic it generates a whole world per environment per step (and puts world generation
into every compiled step). Here a batch of ``N`` environments instead:

1. steps with :func:`step_without_reset` (``step_env`` + ``is_truncated``, gymnax's 6-tuple and
   ``info`` keys, nothing reset);
2. replaces the finished environments' obs and state by entries of a :class:`ResetPool` of
   ``P`` states generated **once per rollout** (:func:`make_reset_pool`,
   ``vmap(env.reset)``), finished environments taking consecutive unused entries
   (:func:`reset_finished`; the cursor wraps, so more than ``P`` episode ends within one
   rollout reuse start states).

So a rollout of ``T`` steps costs ``P`` resets instead of ``N T``. The transition itself is
exactly gymnax's: on non-terminal steps the outputs equal ``env.step``'s; on a terminal step the
pre-reset observation is ``info["final_observation"]`` and the returned obs/state are a fresh
reset (from the pool instead of from the step's own key).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["ResetPool", "make_reset_pool", "reset_finished", "step_without_reset"]


def step_without_reset(env: Any, key: jax.Array, state: Any, action: Any, params: Any):
    """One gymnax-1.0 step of one environment with **no** auto-reset.

    Returns ``(obs, state, reward, terminated, truncated, info)`` of the transition itself,
    ``info`` holding ``terminated``, ``truncated`` and ``final_observation`` (= ``obs``) as
    gymnax's ``step`` does; combine with :func:`reset_finished` to restart finished episodes.
    """
    key_step, _ = jax.random.split(key)  # gymnax's split: the same transition as ``env.step``
    obs, state, reward, terminated, info = env.step_env(key_step, state, action, params)
    truncated = env.is_truncated(state, params)
    info = {**info, "terminated": terminated, "truncated": truncated, "final_observation": obs}
    return obs, state, reward, terminated, truncated, info


class ResetPool(NamedTuple):
    """``P`` reset observations and states (leading axis ``P``) and the next unused entry."""

    obs: Any
    state: Any
    cursor: jax.Array  # int32[]


def make_reset_pool(env: Any, params: Any, key: jax.Array, size: int, cursor: Any = 0) -> ResetPool:
    """``size`` fresh resets ``vmap(env.reset_env)`` under one (unbatched) ``params``."""
    keys = jax.random.split(key, size)
    obs, state = jax.vmap(env.reset_env, in_axes=(0, None))(keys, params)
    return ResetPool(obs, state, jnp.asarray(cursor, jnp.int32))


def reset_finished(
    done: jax.Array, obs: Any, state: Any, pool: ResetPool
) -> tuple[Any, Any, ResetPool]:
    """Give every environment with ``done`` (bool[N]) the next unused pool entry.

    The ``k``-th finished environment (in index order) takes entry ``(cursor + k) mod P``;
    the cursor advances by the number finished. Returns ``(obs, state, pool)``.
    """
    size = jax.tree.leaves(pool.state)[0].shape[0]
    rank = jnp.cumsum(done.astype(jnp.int32)) - 1
    idx = (pool.cursor + rank) % size

    def pick(fresh, current):
        mask = jnp.reshape(done, done.shape + (1,) * (current.ndim - 1))
        return jnp.where(mask, fresh[idx], current)

    obs = jax.tree.map(pick, pool.obs, obs)
    state = jax.tree.map(pick, pool.state, state)
    return obs, state, pool._replace(cursor=pool.cursor + jnp.sum(done.astype(jnp.int32)))
