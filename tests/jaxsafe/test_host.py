"""NumPy twin (HostSafeguard) around Gymnasium envs agrees with the JAX wrapper."""

import gymnasium
import jax
import numpy as np
import pytest

from jaxsafe import HostSafeguard, Labeller, SafeguardWrapper, SpecError, load_spec, parse_spec
from jaxsafe.envs import GRIDWORLD_LABELLER, LABELS, GridParams, GridWorld, label_grid


class NumpyGrid(gymnasium.Env):
    """Deterministic (no slip, no jitter) NumPy gridworld with the Gymnasium API."""

    moves = [(0, 1), (-1, 0), (0, -1), (1, 0), (0, 0)]

    def __init__(self):
        self.observation_space = gymnasium.spaces.Box(0.0, 1.0, (100,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(5)
        self.labels = np.asarray(label_grid(0))
        self.pos = (5, 2)

    def _obs(self):
        return np.eye(100, dtype=np.float32)[self.pos[0] * 10 + self.pos[1]]

    def reset(self, *, seed=None, options=None):
        self.pos = (5, 2)
        return self._obs(), {}

    def step(self, action):
        dr, dc = self.moves[action]
        self.pos = (min(max(self.pos[0] + dr, 0), 9), min(max(self.pos[1] + dc, 0), 9))
        return self._obs(), 0.0, False, False, {}


HOST_LABELLER = Labeller.categorical(LABELS, lambda env, obs, info: env.labels[env.pos])


@pytest.mark.parametrize("mode", ["paper", "shaping", "cost"])
def test_host_twin_matches_jax_wrapper_step_by_step(mode):
    spec = load_spec("sg3")
    actions = [1, 1, 1, 0, 0, 0, 3, 3, 4, 0]  # wood, smith table, lava, ...
    jax_env = SafeguardWrapper(GridWorld(), GRIDWORLD_LABELLER, spec, mode=mode)
    params = jax_env.make_params(spec, env_params=GridParams(slip_prob=0.0, jitter_prob=0.0))
    host = HostSafeguard(NumpyGrid(), HOST_LABELLER, spec, mode=mode)
    obs_h, _ = host.reset()
    obs_j, s = jax_env.reset(jax.random.key(0), params)
    np.testing.assert_array_equal(obs_h, obs_j)
    assert host.observation_space.shape == obs_h.shape
    for t, a in enumerate(actions):
        obs_h, r_h, term_h, _, info_h = host.step(a)
        obs_j, s, r_j, term_j, _, info_j = jax_env.step(jax.random.key(t), s, a, params)
        assert term_h == bool(term_j)
        np.testing.assert_allclose(r_h, float(r_j), rtol=1e-5, atol=1e-6)
        for key in ("violation", "automaton_state", "accepting", "cost", "label", "env_reward"):
            assert info_h[key] == info_j[key].item(), (t, key)
        if term_h:  # gymnax auto-resets; the host twin is reset by the caller
            np.testing.assert_array_equal(obs_h, info_j["final_observation"])
            obs_h, _ = host.reset()
        np.testing.assert_array_equal(obs_h, obs_j)


def test_host_twin_guards_gymnasium_cartpole_and_checks_alphabet():
    spec = parse_spec(
        {
            "alphabet": {"propositions": ["tilted"]},
            "states": ["ok", "bad"],
            "initial": "ok",
            "violation": ["bad"],
            "accepting": ["ok"],
            "transitions": {"ok": {"tilted": "bad", "else": "ok"}},
        }
    )
    tilted = Labeller.from_propositions(["tilted"], lambda env, obs, info: [abs(obs[2]) > 0.02])
    env = HostSafeguard(gymnasium.make("CartPole-v1"), tilted, spec)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (6,)
    for _ in range(200):
        obs, reward, terminated, truncated, info = env.step(0)
        if terminated:
            break
    assert info["violation"] and terminated and np.isclose(reward, 0.9)
    wrong = Labeller.from_propositions(["leaning"], tilted.fn)
    with pytest.raises(SpecError, match="only in the spec: \\['tilted'\\]"):
        HostSafeguard(gymnasium.make("CartPole-v1"), wrong, spec)
