"""Adaptation to new specifications: pre-train PPO across many specs, then adapt to a held-out one.

Pre-training gives environment ``i`` spec ``i mod K`` of the K training specs (params stacked by
:func:`jaxsafe.automaton.stack_automata` through ``SafeguardWrapper.make_params``, then spread
over the N environments, ``config.per_env_params``); the policy sees its automaton state and the
spec encoding :func:`jaxsafe.agents.ppo.automaton_features` (``config.spec_obs``), and each
environment's own spec is its reference (task reward and task completion). Adaptation continues
from the pre-trained network (fresh optimiser) on the held-out spec alone; the control trains on
the held-out spec from scratch with the same budget and seeds.

*Samples to target* is the number of environment steps until the first greedy evaluation with
task completion >= ``target_task`` and violation rate <= ``target_violation`` (``inf`` if never);
*violations to target* the training violations spent until then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxsafe.agents import ppo
from jaxsafe.spec import Spec
from jaxsafe.wrappers import SafeguardWrapper

__all__ = ["per_env_params", "run_adaptation", "to_target"]


def per_env_params(
    env: SafeguardWrapper, specs: Sequence[Spec], num_envs: int, **make_kw: Any
) -> Any:
    """Safeguard params with a leading ``[num_envs]`` axis: env ``i`` runs ``specs[i % K]``."""
    stacked = env.make_params(list(specs), **make_kw)
    idx = jnp.arange(num_envs) % len(specs)
    return jax.tree.map(lambda x: x[idx], stacked)


def to_target(
    metrics: dict, eval_every: int, target_task: float, target_violation: float
) -> dict[str, np.ndarray]:
    """Per seed (leading axis of ``metrics``): env steps and training violations until the first
    evaluation meeting both targets (``inf`` if none did), and whether it was reached."""
    task = np.asarray(metrics["eval_task_completion"])  # [seeds, E]
    viol = np.asarray(metrics["eval_violation"])
    ok = (task >= target_task) & (viol <= target_violation)
    steps = np.asarray(metrics["steps"])[:, eval_every - 1 :: eval_every]  # at each evaluation
    cum_viol = np.asarray(metrics["violations"])[:, eval_every - 1 :: eval_every]
    first = np.where(ok.any(1), ok.argmax(1), -1)
    rows = np.arange(len(first))
    reached = first >= 0
    return {
        "reached": reached,
        "samples": np.where(reached, steps[rows, first], np.inf),
        "violations": np.where(reached, cum_viol[rows, first], np.inf),
        "final_task_completion": task[:, -1],
        "final_violation": viol[:, -1],
    }


def run_adaptation(
    config: ml_collections.ConfigDict,
    env: SafeguardWrapper,
    train_specs: Sequence[Spec],
    heldout: Spec,
    keys: jax.Array,
    *,
    env_params: Any = None,
    target_task: float = 0.8,
    target_violation: float = 0.1,
    task_reward: float = 1.0,
) -> dict[str, Any]:
    """Pre-train on ``train_specs``, adapt to ``heldout``, and train on ``heldout`` from scratch.

    ``config`` gives one stage budget used three times (pre-training, adaptation, scratch), so a
    single compiled program serves all; ``keys`` are the seeds (vmapped). Returns
    ``{"pretrain", "adapt", "scratch"}`` metric dicts (``[seeds, ...]`` arrays) and
    ``"adapt_to_target"`` / ``"scratch_to_target"`` from :func:`to_target`.
    """
    c = ml_collections.ConfigDict(config.to_dict())
    c.per_env_params, c.spec_obs, c.reference_obs = True, True, True
    if len(c.stage_steps) != 1:
        raise ValueError("run_adaptation takes a one-stage config (stage_steps=(steps,))")
    n = c.num_envs
    kw = {} if env_params is None else {"env_params": env_params}
    train_p = per_env_params(env, train_specs, n, **kw)
    held_p = per_env_params(env, [heldout], n, **kw)
    held_eval = env.make_params(heldout, **kw)
    pre_plan = ppo.make_plan(c, [train_p], held_eval, train_p.automaton, task_reward=task_reward)
    held_plan = ppo.make_plan(c, [held_p], held_eval, held_p.automaton, task_reward=task_reward)
    train_fn = ppo.make_train(c, env)
    train = jax.jit(jax.vmap(train_fn, in_axes=(0, None, 0)))  # one program for all three runs
    k_pre, k_ad = jax.vmap(lambda k: jax.random.split(k, 2), out_axes=1)(keys)
    init = jax.jit(jax.vmap(train_fn.init_params, in_axes=(0, None)))
    pre_runner, pre_m = train(k_pre, pre_plan, init(k_pre, pre_plan))
    _, ad_m = train(k_ad, held_plan, pre_runner.params)
    _, sc_m = train(k_ad, held_plan, init(k_ad, held_plan))
    args = (c.eval_every, target_task, target_violation)
    return {
        "pretrain": pre_m,
        "adapt": ad_m,
        "scratch": sc_m,
        "adapt_to_target": to_target(ad_m, *args),
        "scratch_to_target": to_target(sc_m, *args),
    }
