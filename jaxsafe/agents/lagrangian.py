"""PPO-Lagrangian: a cost budget enforced by a non-negative multiplier (Ray et al., 2019).

The constrained problem ``max_pi J_r(pi)  s.t.  J_c(pi) <= b`` (``J_c``: expected episode cost,
here the number of violations the wrapper's ``info["cost"]`` counts) becomes
``min_{lambda >= 0} max_pi J_r - lambda (J_c - b)``. The multiplier takes a projected
(sub)gradient step on the measured episode cost of the rollout,

.. math::

    \\lambda \\leftarrow \\max\\bigl(0,\\; \\lambda + \\eta_\\lambda (\\bar J_c - b)\\bigr),

plain SGD (not Adam, whose normalised steps ignore how far the cost is from the budget), and is
left unchanged when no episode ended in the rollout. The policy climbs the combined advantage
``(A_r - lambda A_c) / (1 + lambda)``, rescaled so its size does not grow with ``lambda``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["combine_advantages", "update_multiplier"]


def update_multiplier(
    lam: jax.Array,
    cost_sum: jax.Array,
    episodes: jax.Array,
    budget: jax.Array,
    lr: jax.Array,
) -> jax.Array:
    """float32[]: ``max(0, lam + lr * (cost_sum / episodes - budget))``, or ``lam`` if no
    episode ended (``episodes == 0``)."""
    mean_cost = cost_sum / jnp.maximum(episodes, 1.0)
    new = jnp.maximum(0.0, lam + lr * (mean_cost - budget))
    return jnp.where(episodes > 0, new, lam).astype(jnp.float32)


def combine_advantages(adv_reward: jax.Array, adv_cost: jax.Array, lam: jax.Array) -> jax.Array:
    """``(A_r - lam * A_c) / (1 + lam)``, same shape as the inputs."""
    return (adv_reward - lam * adv_cost) / (1.0 + lam)
