"""The one rollout of the library: ``vmap(reset)`` then ``lax.scan`` over ``vmap(step)``.

Agents, tests and benchmarks all collect experience through :func:`rollout` (or
:func:`reset_envs` + :func:`rollout_from` to continue from where the last rollout stopped, as
PPO does between updates). The environment is any gymnax 1.0 environment (6-tuple ``step``,
auto-reset), e.g. a :class:`~jaxsafe.wrappers.SafeguardWrapper`.

A policy is a pure function ``policy(key, obs, state) -> action`` of **one** environment
(``obs`` and ``state`` unbatched); the rollout vmaps it over environments. Keys: each step's key
is split into one policy key and one step key per environment, so a rollout is a pure function
of its key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Trajectory", "random_policy", "reset_envs", "rollout", "rollout_from"]

Policy = Callable[[jax.Array, Any, Any], Any]


class Trajectory(NamedTuple):
    """What a rollout of ``T`` steps over ``N`` environments saw (leading axes ``[T, N]``).

    ``obs``: observation the action was chosen from; ``action``; ``reward`` float32[T, N];
    ``terminated``, ``truncated`` bool[T, N]; ``info``: the step's info dict (its
    ``final_observation`` is the pre-reset next observation); ``state``: the pre-step env state
    when the rollout was asked to keep it, else ``None``.
    """

    obs: Any
    action: Any
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    info: dict[str, Any]
    state: Any = None


def random_policy(num_actions: int) -> Policy:
    """Uniform random discrete actions: ``policy(key, obs, state) -> int32[]``."""
    return lambda key, obs, state: jax.random.randint(key, (), 0, num_actions)


def reset_envs(env: Any, params: Any, key: jax.Array, num_envs: int) -> tuple[Any, Any]:
    """``vmap(env.reset)`` over ``num_envs`` keys split from ``key``: batched ``(obs, state)``."""
    return jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), params)


def rollout_from(
    env: Any,
    params: Any,
    policy: Policy,
    key: jax.Array,
    obs: Any,
    state: Any,
    num_steps: int,
    *,
    keep_state: bool = False,
) -> tuple[tuple[Any, Any], Trajectory]:
    """Scan ``num_steps`` steps of ``vmap(env.step)`` from batched ``(obs, state)``.

    Returns ``((last_obs, last_state), trajectory)`` with trajectory leaves ``[T, N, ...]``.
    Jittable (``env`` and ``policy`` are closed over; wrap the call in ``jax.jit``).
    """
    num_envs = jax.tree.leaves(state)[0].shape[0]
    act = jax.vmap(policy)
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def body(carry, step_key):
        obs, state = carry
        k_policy, k_step = jax.random.split(step_key)
        action = act(jax.random.split(k_policy, num_envs), obs, state)
        next_obs, next_state, reward, terminated, truncated, info = step(
            jax.random.split(k_step, num_envs), state, action, params
        )
        out = Trajectory(
            obs=obs,
            action=action,
            reward=jnp.asarray(reward, jnp.float32),
            terminated=jnp.asarray(terminated, bool),
            truncated=jnp.asarray(truncated, bool),
            info=info,
            state=state if keep_state else None,
        )
        return (next_obs, next_state), out

    with jax.named_scope("rollout"):
        return jax.lax.scan(body, (obs, state), jax.random.split(key, num_steps))


def rollout(
    env: Any,
    params: Any,
    policy: Policy,
    key: jax.Array,
    num_envs: int,
    num_steps: int,
    *,
    keep_state: bool = False,
) -> tuple[tuple[Any, Any], Trajectory]:
    """Reset ``num_envs`` environments and roll them out for ``num_steps`` steps.

    ``vmap(reset)`` then ``scan(vmap(step))``; see :func:`rollout_from` for the outputs.
    """
    k_reset, k_steps = jax.random.split(key)
    obs, state = reset_envs(env, params, k_reset, num_envs)
    return rollout_from(env, params, policy, k_steps, obs, state, num_steps, keep_state=keep_state)
