"""Adapters that give other JAX environments the gymnax 1.0 interface the wrapper expects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from gymnax.environments import environment

__all__ = ["FiveTupleAdapter"]


class FiveTupleAdapter(environment.Environment):
    """Wrap an environment whose ``step_env`` returns the old 5-tuple
    ``(obs, state, reward, done, info)`` (gymnax <= 0.0.9, Craftax 1.6).

    ``done`` is split into ``terminated = done and not truncated`` and ``truncated =
    truncated_fn(state, params)`` (default: never truncated), and gymnax 1.0's inherited ``step``
    returns ``(obs, state, reward, terminated, truncated, info)`` with auto-reset. Only the inner
    ``step_env`` / ``reset_env`` are called, so the inner env's own auto-reset (if any) is unused.

    gymnax's inherited ``step`` computes a reset on every step; for Craftax that is a world
    generation per step. Batched training should step with
    :func:`jaxsafe.resets.step_without_reset` and restart finished episodes from a
    :class:`jaxsafe.resets.ResetPool` (PPO: ``config.reset_pool``).
    """

    def __init__(
        self,
        env: Any,
        truncated_fn: Callable[[Any, Any], jax.Array] | None = None,
        name: str | None = None,
    ):
        self._env = env
        self._truncated_fn = truncated_fn
        self._name = name

    @property
    def env(self) -> Any:
        return self._env

    @property
    def default_params(self) -> Any:
        return self._env.default_params

    def step_env(self, key, state, action, params):
        obs, state, reward, done, info = self._env.step_env(key, state, action, params)
        terminated = jnp.logical_and(done, jnp.logical_not(self.is_truncated(state, params)))
        return obs, state, jnp.asarray(reward, jnp.float32), terminated, info

    def reset_env(self, key, params):
        return self._env.reset_env(key, params)

    def is_truncated(self, state, params) -> jax.Array:
        if self._truncated_fn is None:
            return jnp.bool_(False)
        return jnp.asarray(self._truncated_fn(state, params), bool)

    @property
    def name(self) -> str:
        return self._name or self._env.name

    @property
    def num_actions(self) -> int:
        return self._env.num_actions

    def action_space(self, params=None):
        return self._env.action_space(params)

    def observation_space(self, params):
        return self._env.observation_space(params)
