"""PPO: GAE through truncation, learning a trivial task, curriculum carry-over, seed vmap."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsafe
from jaxsafe.agents import ppo
from jaxsafe.envs import GRIDWORLD_LABELLER, GridParams, GridWorld


def _gae_reference(reward, value, next_value, terminated, truncated, gamma, lam):
    """Plain loop: bootstrap unless terminated; cut the trace at every episode end."""
    t_len = len(reward)
    adv = np.zeros(t_len)
    last = 0.0
    for t in reversed(range(t_len)):
        done = terminated[t] or truncated[t]
        delta = reward[t] + gamma * (0.0 if terminated[t] else next_value[t]) - value[t]
        last = delta + gamma * lam * (0.0 if done else last)
        adv[t] = last
    return adv


def test_gae_bootstraps_through_truncation_but_not_termination():
    rng = np.random.default_rng(0)
    t_len = 12
    reward, value, next_value = (rng.normal(size=t_len) for _ in range(3))
    terminated = np.zeros(t_len, bool)
    truncated = np.zeros(t_len, bool)
    terminated[3], truncated[7] = True, True
    adv, ret = ppo.gae(
        jnp.asarray(reward)[:, None], jnp.asarray(value)[:, None],
        jnp.asarray(next_value)[:, None], jnp.asarray(terminated)[:, None],
        jnp.asarray(terminated | truncated)[:, None], 0.9, 0.8,
    )  # fmt: skip
    want = _gae_reference(reward, value, next_value, terminated, truncated, 0.9, 0.8)
    np.testing.assert_allclose(np.asarray(adv)[:, 0], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ret)[:, 0], want + value, rtol=1e-5, atol=1e-6)
    # the two boundaries differ exactly by the bootstrap term
    np.testing.assert_allclose(float(adv[3, 0]), reward[3] - value[3], rtol=1e-5)
    np.testing.assert_allclose(
        float(adv[7, 0]), reward[7] + 0.9 * next_value[7] - value[7], rtol=1e-5
    )


def _tiny(**kw):
    c = ppo.default_config()
    c.num_envs, c.num_steps, c.num_minibatches, c.update_epochs = 8, 32, 2, 2
    c.hidden, c.eval_every, c.eval_envs, c.eval_steps = 32, 2, 8, 40
    c.lr, c.anneal_lr = 3e-3, False
    c.update(kw)
    return c


@functools.cache
def _grid():
    specs = [jaxsafe.load_spec(f"sg{i}") for i in range(4)]
    env = jaxsafe.SafeguardWrapper(
        GridWorld(), GRIDWORLD_LABELLER, specs[3], mode="paper", num_states=6
    )
    gp = GridParams(max_steps_in_episode=40)
    return env, [env.make_params(s, env_params=gp) for s in specs]


@functools.cache
def _task_only_sg1():
    """SG1 paying nothing per safe step: the only positive reward is the task's."""
    env, _ = _grid()
    gp = GridParams(max_steps_in_episode=40)
    return env.make_params(jaxsafe.load_spec("sg1"), env_params=gp, safe_reward=0.0)


def test_goal_states_of_sg3_are_the_two_branch_ends():
    _, params = _grid()
    goal = np.asarray(ppo.goal_states(params[3].automaton))
    assert goal.tolist() == [False, False, True, False, True, False]


STAGE_UPDATES = 30  # two stages of 30 updates: one compiled program serves every test below
ENVS, STEPS = 8, 32


@functools.cache
def _train():
    c = _tiny(stage_steps=(ENVS * STEPS * STAGE_UPDATES,) * 2)
    env, _ = _grid()
    return c, jax.jit(jax.vmap(ppo.make_train(c, env), in_axes=(0, None)))


def _plan(first, second):
    c, _ = _train()
    _, params = _grid()
    p = params[3]
    return ppo.make_plan(c, [params[first], params[second]], p, p.automaton)


# The two tests below share ``_train``'s compiled program when they run in one process:
# under ``--dist loadgroup`` this group sends them to the same xdist worker.
@pytest.mark.slow
@pytest.mark.xdist_group("ppo-train")
def test_ppo_learns_to_reach_the_task_goal_and_seeds_are_independent():
    """Task (SG1's goal): fetch wood, 3 cells up; +1 on entering the goal. The initial greedy
    policy does not; after 60 updates it does, for every vmapped seed."""
    _, train = _train()
    c, _ = _train()
    p = _task_only_sg1()
    plan = ppo.make_plan(c, [p, p], p, p.automaton, task_reward=1.0)
    k = jax.random.split(jax.random.key(0), 3)
    _, m = train(k[:2], plan)
    task = np.asarray(m["eval_task_completion"])  # [seeds, evals]
    assert task[:, -3:].mean(1).min() >= 0.75, task
    # seeds are independent: replacing seed 1 leaves seed 0's run bit-identical
    _, m2 = train(k[::2], plan)
    for name in ("violations", "loss", "eval_return"):
        np.testing.assert_array_equal(np.asarray(m2[name][0]), np.asarray(m[name][0]))
    assert not np.array_equal(np.asarray(m2["loss"][1]), np.asarray(m["loss"][1]))


@pytest.mark.slow
@pytest.mark.xdist_group("ppo-train")
def test_curriculum_switches_stage_and_carries_policy_and_optimiser():
    _, train = _train()
    keys = jax.random.split(jax.random.key(1), 2)  # the same batch shape: no recompilation
    runner, m = train(keys, _plan(0, 3))
    stage = np.asarray(m["stage"][0])
    np.testing.assert_array_equal(stage, [0] * STAGE_UPDATES + [1] * STAGE_UPDATES)
    c, _ = _train()
    # the optimiser's step count runs through both stages (not restarted at the switch)
    count = max(int(np.asarray(x).max()) for x in jax.tree.leaves(runner.opt_state)
                if np.asarray(x).dtype == np.int32)  # fmt: skip
    assert count == 2 * STAGE_UPDATES * c.update_epochs * c.num_minibatches
    # stage 1 starts where stage 0 ended: the first stage is exactly SG0 trained alone
    _, m0 = train(keys, _plan(0, 0))
    for k in ("loss", "value_start", "violations"):
        a, b = np.asarray(m[k][0]), np.asarray(m0[k][0])
        np.testing.assert_array_equal(a[:STAGE_UPDATES], b[:STAGE_UPDATES])
    # ... and from then on it trains on SG3, not SG0
    assert not np.array_equal(np.asarray(m["loss"][0]), np.asarray(m0["loss"][0]))
    assert np.all(np.diff(np.asarray(m["steps"][0])) == ENVS * STEPS)


@pytest.mark.slow
def test_reset_pool_restarts_finished_episodes_and_trains():
    """With ``reset_pool`` the envs step without gymnax's per-step reset; finished episodes
    restart from the pool (at the initial automaton state), so episodes keep ending and being
    counted, and the first update is stage 0 (the pool's first entries start the envs)."""
    env, params = _grid()
    with pytest.raises(ValueError, match="reset_pool"):
        ppo.make_train(_tiny(reset_pool=ENVS - 1), env)
    c = _tiny(reset_pool=2 * ENVS, stage_steps=(ENVS * STEPS * 4,))
    p = params[0]  # SG0: violations end episodes often
    plan = ppo.make_plan(c, [p], p, p.automaton)
    # compile-bound (4 updates): LLVM optimisation level 0 halves XLA's compile time; nothing
    # here depends on the last bits of the numbers (learning is checked above, compiled as usual)
    fast = {"xla_backend_optimization_level": 0}
    runner, m = jax.jit(ppo.make_train(c, env), compiler_options=fast)(jax.random.key(0), plan)
    m = jax.device_get(m)
    np.testing.assert_array_equal(m["stage"], [0, 0, 0, 0])
    assert m["episodes"].sum() > 0 and np.isfinite(m["loss"]).all()
    # every env's automaton is in a valid, non-violation state after the restarts
    q = np.asarray(runner.env_state.q)
    assert not np.asarray(p.automaton.violation)[q].any()
    np.testing.assert_array_equal(m["steps"], ENVS * STEPS * np.arange(1, 5))
