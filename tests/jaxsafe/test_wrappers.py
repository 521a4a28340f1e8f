"""Safeguard wrapper on gymnax envs: product-MDP semantics, reward modes, auto-reset, vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments.classic_control import CartPole
from gymnax.wrappers.purerl import LogWrapper

from jaxsafe import Labeller, SafeguardWrapper, SpecError, load_spec, parse_spec
from jaxsafe.envs import GRIDWORLD_LABELLER, LABELS, GridParams, GridWorld, label_grid
from jaxsafe.rollout import random_policy, rollout
from tests.jaxsafe.helpers import REACH

UP, RIGHT, LEFT, DOWN, STAY = 1, 0, 2, 3, 4
STILL = GridParams(slip_prob=0.0, jitter_prob=0.0)


def gridworld(spec="sg3", **kw):
    return SafeguardWrapper(GridWorld(), GRIDWORLD_LABELLER, load_spec(spec), **kw)


def play(env, params, actions, key=0):
    """Reset and step a scripted action list (Python loop; the env step itself is jitted)."""
    _, s = env.reset(jax.random.key(key), params)
    out = []
    for t, a in enumerate(actions):
        obs, s, r, term, trunc, info = env.step(jax.random.key(100 + t), s, a, params)
        out.append((obs, s, float(r), bool(term), info))
    return out


def test_reset_starts_in_initial_state_and_appends_one_hot():
    env = gridworld()
    obs, s = env.reset(jax.random.key(0), env.default_params)
    assert obs.shape == (106,) == env.observation_space(env.default_params).shape
    assert int(s.q) == 0 and int(s.episode_violations) == 0
    np.testing.assert_array_equal(obs[100:], [1, 0, 0, 0, 0, 0])
    assert int(np.argmax(obs[:100])) == 52  # start cell (5, 2)


def test_paper_mode_rewards_safe_steps_and_terminates_on_violation():
    env = gridworld()
    params = env.make_params(load_spec("sg3"), env_params=STILL)
    # up x3 reaches wood (2,2) -> q1; right x2 passes (2,3) to the smith table (2,4); right = lava
    steps = play(env, params, [UP, UP, UP, RIGHT, RIGHT, RIGHT])
    rewards = [r for _, _, r, _, _ in steps]
    np.testing.assert_allclose(rewards, [0.1] * 5 + [-0.1], rtol=1e-6)
    assert [t for _, _, _, t, _ in steps] == [False] * 5 + [True]
    qs = [int(info["automaton_state"]) for *_, info in steps]
    assert qs == [0, 0, 1, 1, 1, 5]
    labels = [LABELS[int(info["label"])] for *_, info in steps]
    assert labels == ["safe", "safe", "wood", "safe", "smith_table", "basalt_lava"]
    obs, s, _, _, info = steps[-1]
    assert bool(info["violation"]) and not bool(info["accepting"])
    # gymnax auto-reset: the returned state is a fresh episode, the final obs shows the sink
    assert int(s.q) == 0 and tuple(np.asarray(s.env_state.pos)) == (5, 2)
    assert int(np.argmax(info["final_observation"][100:])) == 5
    assert int(np.argmax(obs[100:])) == 0


def reference_rollout(spec, jitters, positions, truncated):
    """NumPy ground truth of the product MDP from pre-reset positions and jitters [T, N]."""
    t_max, n = positions.shape[:2]
    q = np.full(n, spec.initial)
    grids = {j: np.asarray(label_grid(jnp.int32(j))) for j in (-1, 0, 1)}
    out = {"q": [], "reward": [], "terminated": [], "label": []}
    for t in range(t_max):
        label = np.array([grids[int(jitters[t, i])][tuple(positions[t, i])] for i in range(n)])
        q_next = spec.delta[q, label]
        viol = spec.violation[q_next]
        out["q"].append(q_next)
        out["label"].append(label)
        out["reward"].append(np.where(viol, -0.1, 0.1))
        out["terminated"].append(viol)
        q = np.where(viol | truncated[t], spec.initial, q_next)
    return {k: np.stack(v) for k, v in out.items()}


def test_jitted_random_rollouts_match_a_numpy_reference_across_auto_resets():
    env = gridworld()
    spec = env.safety_spec
    params = env.make_params(spec, env_params=GridParams(max_steps_in_episode=40))
    n, steps = 16, 300

    @jax.jit
    def run(key):
        _, traj = rollout(env, params, random_policy(5), key, n, steps, keep_state=True)
        cell = jnp.argmax(traj.info["final_observation"][..., :100], axis=-1)
        pos = jnp.stack([cell // 10, cell % 10], -1)
        jitter = traj.state.env_state.jitter
        return jitter, pos, traj.reward, traj.terminated, traj.truncated, traj.info

    jitter, pos, r, term, trunc, info = jax.device_get(run(jax.random.key(7)))
    ref = reference_rollout(spec, jitter, pos, trunc)
    assert term.any() and trunc.any()  # both kinds of reset happened
    np.testing.assert_array_equal(info["label"], ref["label"])
    np.testing.assert_array_equal(info["automaton_state"], ref["q"])
    np.testing.assert_array_equal(term, ref["terminated"])
    np.testing.assert_allclose(r, ref["reward"], rtol=1e-6)
    assert not info["label_out_of_range"].any()


def test_shaping_mode_adds_gamma_phi_next_minus_phi_to_the_paper_reward():
    spec = parse_spec(REACH)
    env = SafeguardWrapper(GridWorld(), GRIDWORLD_LABELLER, spec, mode="shaping", gamma=0.9)
    params = env.make_params(spec, env_params=STILL)
    phi = {"start": 0.81, "has_wood": 0.9, "done": 1.0, "bad": 0.0}  # gamma ** distance
    np.testing.assert_allclose(params.automaton.potential, list(phi.values()), rtol=1e-6)
    steps = play(env, params, [UP, UP, UP, RIGHT, RIGHT, STAY, RIGHT])
    names = ["start", "start", "has_wood", "has_wood", "done", "done", "bad"]
    prev, expected = "start", []
    for i, q in enumerate(names):
        terminated = q == "bad"
        base = {"done": 0.1, "bad": -0.1}.get(q, 0.0)  # paper reward: accepting / violation
        expected.append(base + 0.9 * (0.0 if terminated else phi[q]) - phi[prev])
        prev = q
        assert spec.states[int(steps[i][4]["automaton_state"])] == q
    np.testing.assert_allclose([r for _, _, r, _, _ in steps], expected, rtol=1e-5, atol=1e-6)
    assert steps[-1][3]  # violation still terminates in shaping mode


def test_cost_mode_reports_cost_without_terminating_and_restarts_the_automaton():
    env = gridworld("sg0", mode="cost")
    params = env.make_params(load_spec("sg0"), env_params=STILL)
    # (5,2) -> right x3 -> (5,5); up -> (4,5) creeper; stay on the creeper; down -> safe
    steps = play(env, params, [RIGHT, RIGHT, RIGHT, UP, STAY, DOWN])
    assert [t for _, _, _, t, _ in steps] == [False] * 6
    assert [float(i["cost"]) for *_, i in steps] == [0, 0, 0, 1, 1, 0]
    assert [r for _, _, r, _, _ in steps] == [0.0] * 6  # env reward untouched
    assert [int(i["episode_violations"]) for *_, i in steps] == [0, 0, 0, 1, 2, 2]
    assert int(steps[3][4]["automaton_state"]) == 1  # the sink is reported ...
    assert int(steps[3][1].q) == 0  # ... and the automaton restarts from its initial state


def test_vmap_over_specs_and_envs_matches_each_spec_alone():
    specs = [load_spec(f"sg{i}") for i in range(4)]
    env = gridworld(num_states=6)
    batched = env.make_params(specs)
    assert batched.automaton.delta.shape == (4, 6, 8) and batched.safe_reward.shape == (4,)
    n, steps = 3, 60

    def run(params):
        _, traj = rollout(env, params, random_policy(5), jax.random.key(0), n, steps)
        return traj.reward, traj.terminated, traj.info["automaton_state"]

    together = jax.jit(jax.vmap(run))(batched)
    for k, spec in enumerate(specs):
        alone = jax.jit(run)(env.make_params(spec))
        for a, b in zip(alone, together, strict=True):
            np.testing.assert_array_equal(a, b[k])
    with pytest.raises(SpecError, match="stacked batch"):
        env.reset(jax.random.key(0), batched)


def test_out_of_range_labels_are_clamped_and_flagged():
    bad = Labeller.categorical(LABELS, lambda s: jnp.int32(99))
    env = SafeguardWrapper(GridWorld(), bad, load_spec("sg3"))
    _, s = env.reset(jax.random.key(0))
    _, s, _, term, _, info = env.step(jax.random.key(1), s, STAY)
    assert bool(info["label_out_of_range"]) and int(info["label"]) == 99
    assert int(info["automaton_state"]) == 0 and not bool(term)  # clamped to 'diamond'


def test_alphabet_mismatches_are_clear_errors():
    sg3 = load_spec("sg3")
    reordered = Labeller.categorical(LABELS[::-1], GRIDWORLD_LABELLER.fn)
    with pytest.raises(SpecError, match="different order"):
        SafeguardWrapper(GridWorld(), reordered, sg3)
    renamed = Labeller.categorical(("safe", "lava"), GRIDWORLD_LABELLER.fn)
    with pytest.raises(SpecError, match=r"only in the spec: \[.*'basalt_lava'"):
        SafeguardWrapper(GridWorld(), renamed, sg3)
    props = Labeller.from_propositions(("safe",), lambda s: jnp.array([True]))
    with pytest.raises(SpecError, match="reads labels but the labelling function produces"):
        SafeguardWrapper(GridWorld(), props, sg3)
    env = gridworld()
    with pytest.raises(SpecError, match="craftax_lava"):
        env.make_params(load_spec("craftax_lava"))
    for bad in ({"mode": "safe"}, {"obs_mode": "flat"}, {"potential": "dist"}):
        with pytest.raises(SpecError, match="unknown"):
            gridworld(**bad)


CARTPOLE = {
    "alphabet": {"propositions": ["off_centre", "tilted"]},
    "states": ["ok", "bad"],
    "initial": "ok",
    "violation": ["bad"],
    "accepting": ["ok"],
    "transitions": {"ok": {"off_centre or tilted": "bad", "else": "ok"}},
}


@pytest.mark.parametrize("obs_mode", ["concat", "dict", "none"])
def test_cartpole_with_propositions_terminates_on_env_or_violation(obs_mode):
    labeller = Labeller.from_propositions(
        ["off_centre", "tilted"],
        lambda s: jnp.stack([jnp.abs(s.x) > 0.05, jnp.abs(s.theta) > 0.05]),
    )
    env = SafeguardWrapper(CartPole(), labeller, parse_spec(CARTPOLE), obs_mode=obs_mode)
    params = env.default_params
    n = 8

    @jax.jit
    def run(key):
        _, traj = rollout(env, params, random_policy(2), key, n, 40)
        return traj.obs, traj.reward, traj.terminated, traj.info

    obs, r, term, info = jax.device_get(run(jax.random.key(0)))
    final = info["final_observation"]
    inner = {"concat": lambda o: o[..., :4], "dict": lambda o: o["obs"], "none": lambda o: o}
    x, theta = inner[obs_mode](final)[..., 0], inner[obs_mode](final)[..., 2]
    violation = (np.abs(x) > 0.05) | (np.abs(theta) > 0.05)
    np.testing.assert_array_equal(info["violation"], violation)  # fresh automaton every episode
    assert violation.any()
    np.testing.assert_array_equal(term, violation | info["terminated"])
    np.testing.assert_allclose(r, 1.0 + np.where(violation, -0.1, 0.1), rtol=1e-6)
    space = env.observation_space(params)
    if obs_mode == "concat":
        assert obs.shape == (40, n, 6) == (40, n, *space.shape)
    elif obs_mode == "dict":
        assert obs["automaton"].shape == (40, n, 2) and obs["obs"].shape == (40, n, 4)
    else:
        assert obs.shape == (40, n, 4)


def test_gymnax_log_wrapper_composes_with_the_safeguard():
    env = LogWrapper(gridworld())
    params = env.default_params
    _, s = env.reset(jax.random.key(0), params)
    _, s, r, term, _, info = jax.jit(env.step)(jax.random.key(1), s, UP, params)
    assert np.isclose(float(r), 0.1) and "returned_episode_returns" in info
    assert int(s.env_state.q) == 0


def test_wrapper_is_hashable_by_identity_for_static_jit():
    a, b = gridworld(), gridworld()
    assert hash(a) != hash(b) and a != b and a == a
    assert {a: 1}[a] == 1
