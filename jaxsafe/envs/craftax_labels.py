"""Craftax-Classic (``craftax`` 1.6.1): a labelling function, specs, and a gymnax-1.0 adapter.

Propositions (:data:`CRAFTAX_PROPOSITIONS`, bit ``i`` of the symbol):

* ``near_lava``   - lava on the player's cell or one of its 4 neighbours;
* ``near_zombie`` - a live zombie at Manhattan distance <= 1 (close enough to attack);
* ``has_sword``   - any sword (wood, stone or iron) in the inventory;
* ``low_health``  - player health <= 3 (of 9).

Shipped specs over this alphabet: ``craftax_lava`` ("never stand next to lava with low health")
and ``craftax_armed`` ("no lava ever, no zombie contact before holding a sword, and once armed no
zombie contact at low health").

Craftax's ``step`` returns the old 5-tuple and its import is slow, so ``craftax`` is imported
only inside :func:`make_craftax_classic`, which adapts it with
:class:`~jaxsafe.envs.adapters.FiveTupleAdapter` (truncation at ``params.max_timesteps``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsafe.envs.adapters import FiveTupleAdapter
from jaxsafe.labelling import Labeller

__all__ = [
    "CRAFTAX_LABELLER",
    "CRAFTAX_PROPOSITIONS",
    "LAVA_BLOCK",
    "craftax_propositions",
    "make_craftax_classic",
]

CRAFTAX_PROPOSITIONS = ("near_lava", "near_zombie", "has_sword", "low_health")
LAVA_BLOCK = 14  # craftax.craftax_classic.constants.BlockType.LAVA.value (checked in the tests)
LOW_HEALTH = 3
_AROUND = jnp.array([[0, 0], [0, 1], [0, -1], [1, 0], [-1, 0]], jnp.int32)


def craftax_propositions(state) -> jax.Array:
    """bool[4] propositions of a Craftax-Classic ``EnvState`` (unbatched)."""
    size = jnp.array(state.map.shape, jnp.int32)
    cells = jnp.clip(state.player_position[None, :] + _AROUND, 0, size - 1)  # [5, 2]
    near_lava = jnp.any(state.map[cells[:, 0], cells[:, 1]] == LAVA_BLOCK)
    dist = jnp.sum(jnp.abs(state.zombies.position - state.player_position[None, :]), axis=-1)
    near_zombie = jnp.any(state.zombies.mask & (dist <= 1))
    inv = state.inventory
    has_sword = (inv.wood_sword + inv.stone_sword + inv.iron_sword) > 0
    low_health = state.player_health <= LOW_HEALTH
    return jnp.stack([near_lava, near_zombie, has_sword, low_health])


CRAFTAX_LABELLER = Labeller.from_propositions(CRAFTAX_PROPOSITIONS, craftax_propositions)
"""Labelling function of a Craftax-Classic state over :data:`CRAFTAX_PROPOSITIONS`."""


def make_craftax_classic(symbolic: bool = True) -> FiveTupleAdapter:
    """Craftax-Classic (symbolic obs float32[1345], or pixels) with the gymnax 1.0 interface."""
    from craftax.craftax_env import make_craftax_env_from_name

    name = "Craftax-Classic-Symbolic-v1" if symbolic else "Craftax-Classic-Pixels-v1"
    env = make_craftax_env_from_name(name, auto_reset=False)
    return FiveTupleAdapter(
        env, truncated_fn=lambda state, params: state.timestep >= params.max_timesteps, name=name
    )
