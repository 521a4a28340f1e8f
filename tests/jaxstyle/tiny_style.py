"""A tiny StylePolicy whose players really differ, and positions sampled from it (tests only)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxstyle.adapters import Skill, SkillConfig
from jaxstyle.chess.encoding import NUM_PLANES, VOCAB_SIZE
from jaxstyle.model import StyleConfig, StylePolicy
from jaxstyle.policy import PolicyConfig

CONFIG = StyleConfig(
    num_players=6,
    policy=PolicyConfig(blocks=1, filters=8, se_ratio=4, head_channels=2),
    skills=SkillConfig(num_skills=4, num_heads=2, rank=2),
)


def tiny_model(num_players: int = 6, seed: int = 0, skill_scale: float = 1.0) -> StylePolicy:
    """A tiny model with non-zero skills (B starts at zero) and spread-out style vectors."""
    config = StyleConfig(num_players, CONFIG.policy, CONFIG.skills, adapt="blocks+head")
    model = StylePolicy(config, rngs=nnx.Rngs(seed))
    skills = nnx.state(model, Skill)
    leaves, treedef = jax.tree.flatten(skills)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    leaves = [skill_scale * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]
    nnx.update(model, jax.tree.unflatten(treedef, leaves))
    table = 2.0 * jax.random.normal(jax.random.PRNGKey(seed + 2), (num_players, model.routing_size))
    model.style.logits[...] = table
    return model


def random_positions(n: int, seed: int = 0, legal: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """``planes uint8 [n, 18, 8, 8]`` random 0/1 and ``legal_mask bool [n, 1880]`` with
    ``legal`` random moves per position."""
    rng = np.random.default_rng(seed)
    planes = (rng.random((n, NUM_PLANES, 8, 8)) < 0.1).astype(np.uint8)
    mask = np.zeros((n, VOCAB_SIZE), bool)
    for i in range(n):
        mask[i, rng.choice(VOCAB_SIZE, legal, replace=False)] = True
    return planes, mask


def sample_moves(model: StylePolicy, planes, mask, players, seed: int = 0) -> np.ndarray:
    """``int32 [n]`` moves drawn from each row's player's policy."""
    logits = model(jnp.asarray(planes), jnp.asarray(mask), players=jnp.asarray(players))
    return np.asarray(jax.random.categorical(jax.random.PRNGKey(seed), logits), np.int32)
