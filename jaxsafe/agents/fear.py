"""Intrinsic fear (Lipton et al., 2016, arXiv:1611.01211): a learned danger model whose output
is subtracted from the reward, so the agent keeps away from states that lead to violations.

A state is *dangerous* if a violation happens within ``k`` steps of it in the same episode. The
fear model ``F(s) = sigmoid(f_\\theta(s))`` is a small MLP fitted to those labels by binary
cross-entropy; the agent then learns from

.. math::

    \\tilde r_t = r_t - \\lambda_F \\, F(s'_t),

where ``s'_t`` is the (pre-reset) state reached by transition ``t``. Labels near the end of a
rollout, whose future is unseen, count as safe (Lipton et al. keep a buffer of far-from-danger
states for the same purpose).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

__all__ = ["FearModel", "danger_labels", "fear_penalty", "fit_step", "init_fear_model"]


class FearModel(nnx.Module):
    """``float32[..., D] -> float32[...]`` danger logit (one hidden tanh layer)."""

    def __init__(self, obs_dim: int, hidden: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(obs_dim, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(jnp.tanh(self.hidden(x)))[..., 0]


def init_fear_model(key: jax.Array, obs_dim: int, hidden: int) -> tuple[Any, Any]:
    """``(graphdef, params)`` of a fresh :class:`FearModel` (pure, jittable)."""
    return nnx.split(FearModel(obs_dim, hidden, rngs=nnx.Rngs(key)))


def danger_labels(violation: jax.Array, done: jax.Array, horizon: int) -> jax.Array:
    """float32[T, N]: 1 where the state reached at step t is at most ``horizon - 1`` steps
    before a violation of the same episode (the violating step itself included).

    With ``d_t = 0`` if ``violation_t``, else ``d_{t+1} + 1`` if the episode goes on, else
    infinity (a reverse scan), the label is ``d_t < horizon``.
    """
    big = jnp.float32(1e9)

    def body(d_next, xs):
        v, dn = xs
        d = jnp.where(v > 0, 0.0, jnp.where(dn, big, d_next + 1.0))
        return d, d

    init = jnp.full(violation.shape[1:], big)
    _, dist = jax.lax.scan(body, init, (violation.astype(jnp.float32), done), reverse=True)
    return (dist < horizon).astype(jnp.float32)


def fear_penalty(graphdef: Any, params: Any, obs: jax.Array) -> jax.Array:
    """``F(s) = sigmoid(f(s))`` in [0, 1], shape ``obs.shape[:-1]``; no gradient flows."""
    logits = nnx.merge(graphdef, params)(obs)
    return jax.lax.stop_gradient(jax.nn.sigmoid(logits))


def fit_step(
    graphdef: Any,
    tx: optax.GradientTransformation,
    params: Any,
    opt_state: Any,
    obs: jax.Array,
    labels: jax.Array,
) -> tuple[Any, Any, jax.Array]:
    """One full-batch step of ``mean BCE(f(obs), labels)``, dangerous states weighted up to
    balance the classes. Returns ``(params, opt_state, loss)``."""

    def loss_fn(p):
        logits = nnx.merge(graphdef, p)(obs)
        pos = labels.mean()
        weight = jnp.where(
            labels > 0, 0.5 / jnp.maximum(pos, 1e-3), 0.5 / jnp.maximum(1 - pos, 1e-3)
        )
        return (weight * optax.sigmoid_binary_cross_entropy(logits, labels)).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss
