"""PPO throughput with and without the safeguard (JSON on stdout):
``python -m experiments.bench.safe_ppo [--quick]``; merged into ``experiments.bench.safe``.

Each timed call is a whole jitted :func:`jaxsafe.agents.ppo.make_train` run (rollouts over 1024
vmapped envs, GAE, PPO epochs), compile excluded; the safeguarded and the bare program are timed
side by side (:func:`experiments.bench.timing.side_by_side`) and every ratio is the spread of the
per-repeat ratios. The safeguarded program is the same PPO on ``SafeguardWrapper(env)`` (its
observation gains the one-hot automaton state, and PPO steps the reference automaton beside it).

Keys:
  ppo_safeguard_over_bare_gridworld  env steps/s, gridworld + SG3 / bare gridworld (target >= 0.9)
  ppo_safeguard_over_bare_cartpole   env steps/s, CartPole + a 3-state spec / bare CartPole
  ppo_sps_gridworld                  env steps/s of safeguarded gridworld PPO (median/min/max)
"""

from __future__ import annotations

import argparse

import jax
from gymnax.environments.classic_control import CartPole

import jaxsafe
from experiments.bench import timing
from experiments.bench.report import default_out, emit
from experiments.bench.safe import CARTPOLE_LABELLER, CARTPOLE_SPEC
from jaxsafe.agents import ppo
from jaxsafe.envs import GRIDWORLD_LABELLER, GridWorld

NUM_ENVS = 1024


def _config(num_steps: int, updates: int):
    c = ppo.default_config()
    c.num_envs, c.num_steps = NUM_ENVS, num_steps
    c.update_epochs, c.num_minibatches = 2, 4
    c.reference_obs = False
    c.eval_every, c.eval_envs, c.eval_steps = updates, 8, 8
    c.stage_steps = (updates * NUM_ENVS * num_steps,)
    return c


def _programs(bare_env, safe_env, config):
    """Compiled ``() -> metrics`` callables for the bare and the safeguarded PPO."""
    safe_p = safe_env.default_params
    ref = safe_p.automaton
    bare_p = bare_env.default_params
    plans = {
        "bare": (bare_env, ppo.make_plan(config, [bare_p], bare_p, ref, task_reward=0.0)),
        "safe": (safe_env, ppo.make_plan(config, [safe_p], safe_p, ref, task_reward=0.0)),
    }
    key = jax.random.key(0)
    out = {}
    for name, (env, plan) in plans.items():
        timing.progress(f"compiling PPO ({name}, {env.name})")
        fn = jax.jit(ppo.make_train(config, env)).lower(key, plan).compile()
        out[name] = lambda fn=fn, plan=plan: fn(key, plan)[1]["steps"]
    return out


def _measure(bare_env, safe_env, config, repeats: int):
    programs = _programs(bare_env, safe_env, config)
    timing.progress(f"timing bare vs safeguarded PPO, {repeats} repeats")
    times = timing.side_by_side(programs, repeats)
    steps = config.num_envs * config.num_steps * sum(ppo.stage_updates(config))
    rates = timing.rates(times, {k: steps for k in times}, digits=1)
    # steps/s ratio = inverse time ratio
    return timing.ratio(times, "bare", "safe"), rates


def run(quick: bool = False) -> dict:
    """The three keys above (plus the absolute rates of each program, for context)."""
    config = _config(num_steps=16 if quick else 32, updates=2 if quick else 4)
    repeats = 3 if quick else 5
    grid_safe = jaxsafe.SafeguardWrapper(
        GridWorld(), GRIDWORLD_LABELLER, jaxsafe.load_spec("sg3"), mode="paper"
    )
    grid_ratio, grid_rates = _measure(GridWorld(), grid_safe, config, repeats)
    cart_spec = jaxsafe.parse_spec(CARTPOLE_SPEC)
    cart_safe = jaxsafe.SafeguardWrapper(CartPole(), CARTPOLE_LABELLER, cart_spec, mode="paper")
    cart_ratio, cart_rates = _measure(CartPole(), cart_safe, config, repeats)
    return {
        "ppo_safeguard_over_bare_gridworld": grid_ratio,
        "ppo_safeguard_over_bare_cartpole": cart_ratio,
        "ppo_sps_gridworld": grid_rates["safe"],
        "ppo_sps_gridworld_bare": grid_rates["bare"],
        "ppo_sps_cartpole": cart_rates["safe"],
        "ppo_sps_cartpole_bare": cart_rates["bare"],
        "ppo_bench_config": {
            "num_envs": NUM_ENVS,
            "num_steps": config.num_steps,
            "updates": sum(ppo.stage_updates(config)),
            "repeats": repeats,
        },  # fmt: skip
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--out", default=default_out("safe_ppo"), help="JSON path ('' = none)")
    args = parser.parse_args()
    emit(run(quick=args.quick), args.out)


if __name__ == "__main__":
    main()
