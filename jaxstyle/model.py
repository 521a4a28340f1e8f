"""``StylePolicy``: one chess policy, a shared skill inventory and one style vector per player.

The stable API (other modules and the stylometry / steering code build on exactly this)::

    from jaxstyle.model import StyleConfig, StylePolicy
    model = StylePolicy(StyleConfig(num_players=400), rngs=nnx.Rngs(0))
    logits = model(planes, legal_mask)                     # base network (adapters off)
    logits = model(planes, legal_mask, players=ids)        # ids [batch] int32 → style table
    logits = model(planes, legal_mask, routing=z)          # z [batch, R] float32 routing logits
    model.num_players, model.routing_size                  # P and R
    model.style_vectors()                                  # [P, R] float32 (the table Z)
    logits, value = model.policy_and_value(planes, legal_mask, players=ids)

``planes [batch, 18, 8, 8] uint8``, ``legal_mask [batch, 1880] bool``; ``logits
[batch, 1880] float32`` with illegal moves at ``-1e9``. ``routing`` overrides ``players``.
A style vector is a row of routing logits ``Z``; the skill weights are its normalised
sigmoid per head (:func:`jaxstyle.adapters.mixing_weights`). Bad input — a player id outside
the table (checked when ids are concrete), a style vector whose length is not ``R`` — raises
``ValueError`` with one line naming it.

Parameter types: the network's own weights are ``nnx.Param``, the skills
:class:`~jaxstyle.adapters.Skill`, the table :class:`~jaxstyle.adapters.Routing`
(:mod:`jaxstyle.training` freezes and trains them by type).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
from flax import nnx

from jaxstyle import adapters, policy
from jaxstyle.adapters import SkillConfig
from jaxstyle.policy import PolicyConfig

ADAPTED_LAYERS = {
    "blocks": policy.block_layers,
    "blocks+head": policy.head_and_block_layers,
}


@dataclasses.dataclass(frozen=True)
class StyleConfig:
    """Everything that fixes a :class:`StylePolicy`'s parameter shapes.

    Attributes:
      num_players: rows ``P`` of the style table.
      policy: network size.
      skills: skill layout (skills, heads, rank, shared or per-layer routing).
      adapt: which layers get adapters: ``"blocks"`` (residual 3×3 convs) or ``"blocks+head"``.
    """

    num_players: int
    policy: PolicyConfig = PolicyConfig()
    skills: SkillConfig = SkillConfig()
    adapt: str = "blocks"

    def __post_init__(self):
        if self.adapt not in ADAPTED_LAYERS:
            raise ValueError(f"adapt must be one of {sorted(ADAPTED_LAYERS)}, got {self.adapt!r}")
        if int(self.num_players) < 1:
            raise ValueError(f"num_players must be >= 1, got {self.num_players}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StyleConfig:
        data = dict(data)
        return cls(
            num_players=int(data["num_players"]),
            policy=PolicyConfig(**dict(data.get("policy", {}))),
            skills=SkillConfig(**dict(data.get("skills", {}))),
            adapt=str(data.get("adapt", "blocks")),
        )


class StylePolicy(nnx.Module):
    """SE-ResNet policy with MHR skill adapters and a style table (see the module docstring)."""

    def __init__(self, config: StyleConfig, *, rngs: nnx.Rngs):
        self.config = config
        network = policy.PolicyNetwork(config.policy, rngs=rngs)
        self.network, self.num_layers = adapters.wrap(
            network, config.skills, rngs=rngs, include=ADAPTED_LAYERS[config.adapt]
        )
        self.routing_size = adapters.routing_size(config.skills, self.num_layers)
        self.style = adapters.StyleTable(config.num_players, self.routing_size, rngs=rngs)

    @property
    def num_players(self) -> int:
        return self.style.num_players

    def style_vectors(self) -> jax.Array:
        """``[num_players, R] float32``: the routing logits ``Z``."""
        return self.style.logits[...]

    def routing_for(self, players=None, routing=None) -> jax.Array | None:
        """``[batch, R]`` routing logits from ``routing`` or the table, or ``None`` (base)."""
        if routing is not None:
            if routing.ndim != 2 or routing.shape[-1] != self.routing_size:
                raise ValueError(
                    f"style vectors must be [batch, {self.routing_size}] for this model, "
                    f"got shape {tuple(routing.shape)}"
                )
            return routing
        if players is not None:
            return self.style(players)
        return None

    def policy_and_value(self, planes, legal_mask, *, players=None, routing=None):
        """``(logits [batch, 1880] float32, value [batch] float32 or None)``."""
        z = self.routing_for(players, routing)
        if z is not None and z.shape[0] != planes.shape[0]:
            raise ValueError(
                f"{z.shape[0]} style vectors for a batch of {planes.shape[0]} positions"
            )
        weights = (
            None if z is None else adapters.mixing_weights(z, self.config.skills, self.num_layers)
        )
        with adapters.mixing(weights):
            return self.network(planes, legal_mask)

    def __call__(self, planes, legal_mask, *, players=None, routing=None) -> jax.Array:
        """Masked move logits ``[batch, 1880] float32`` (see the module docstring)."""
        return self.policy_and_value(planes, legal_mask, players=players, routing=routing)[0]
