"""Craftax-Classic labels and specs under the safeguard wrapper (one test: compile is slow)."""

import jax
import numpy as np

from jaxsafe import SafeguardWrapper, load_spec
from jaxsafe.envs.craftax_labels import (
    CRAFTAX_LABELLER,
    CRAFTAX_PROPOSITIONS,
    LAVA_BLOCK,
    make_craftax_classic,
)


def reference_symbol(es) -> int:
    """NumPy ground truth of the four propositions, encoded as bits."""
    es = jax.device_get(es)
    r, c = (int(v) for v in es.player_position)
    cells = [(r, c), (r, c + 1), (r, c - 1), (r + 1, c), (r - 1, c)]
    near_lava = any(es.map[min(max(a, 0), 63), min(max(b, 0), 63)] == LAVA_BLOCK for a, b in cells)
    dist = np.abs(es.zombies.position - np.array([r, c])).sum(-1)
    near_zombie = bool((es.zombies.mask & (dist <= 1)).any())
    inv = es.inventory
    has_sword = inv.wood_sword + inv.stone_sword + inv.iron_sword > 0
    low_health = es.player_health <= 3
    bits = [near_lava, near_zombie, has_sword, low_health]
    return sum(int(b) << i for i, b in enumerate(bits))


def test_craftax_safeguard_runs_under_jit_and_tracks_sword_lava_and_zombies():
    from craftax.craftax_classic.constants import BlockType

    assert LAVA_BLOCK == BlockType.LAVA.value
    spec = load_spec("craftax_armed")
    assert spec.alphabet.names == CRAFTAX_PROPOSITIONS
    env = SafeguardWrapper(make_craftax_classic(), CRAFTAX_LABELLER, spec)
    params = env.default_params
    step, reset = jax.jit(env.step), jax.jit(env.reset)
    key = jax.random.key(0)
    obs, s = reset(key, params)
    assert obs.shape == (1345 + 3,) and int(s.q) == spec.index("unarmed")

    def step_from(state, edit_env_state):
        state = state.replace(env_state=edit_env_state(state.env_state))
        obs, new, reward, term, trunc, info = step(key, state, 0, params)  # action 0 = NOOP
        if not bool(term):  # (after a termination the returned state is already reset)
            assert int(info["label"]) == reference_symbol(new.env_state)
        return new, float(reward - info["env_reward"]), bool(term), info

    # a plain step in a fresh world: no hazard, stays unarmed
    s1, r1, term, info = step_from(s, lambda es: es)
    assert (
        np.isclose(r1, 0.1) and not term and spec.states[int(info["automaton_state"])] == "unarmed"
    )
    # lava next to the player while unarmed: violation, termination, penalty
    r, c = (int(v) for v in s.env_state.player_position)
    lava = lambda es: es.replace(map=es.map.at[r, c + 1].set(LAVA_BLOCK))
    _, r2, term, info = step_from(s, lava)
    assert term and bool(info["violation"]) and np.isclose(r2, -0.1)
    # picking up a sword arms the player
    sword = lambda es: es.replace(inventory=es.inventory.replace(wood_sword=1))
    s3, _, term, info = step_from(s, sword)
    assert not term and spec.states[int(s3.q)] == "armed"

    # armed: a zombie next to the player is fine at full health, a violation at low health
    def zombie(health):
        def edit(es):
            z = es.zombies
            z = z.replace(
                position=z.position.at[0].set(es.player_position + np.array([0, 1])),
                mask=z.mask.at[0].set(True),
            )
            return es.replace(zombies=z, player_health=health)

        return edit

    _, _, term, info = step_from(s3, zombie(9))
    assert not term and spec.states[int(info["automaton_state"])] == "armed"
    _, _, term, info = step_from(s3, zombie(2))
    assert term and spec.states[int(info["automaton_state"])] == "violation"
