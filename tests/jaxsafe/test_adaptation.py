"""Adaptation to a held-out spec: per-env spec assignment, the to-target measure, one tiny run."""

import jax
import numpy as np
import pytest

import jaxsafe
from jaxsafe.agents import adaptation, ppo
from jaxsafe.envs import GRIDWORLD_LABELLER, GridParams, GridWorld


def _env():
    return jaxsafe.SafeguardWrapper(
        GridWorld(), GRIDWORLD_LABELLER, jaxsafe.load_spec("sg3"), mode="paper", num_states=6
    )


def test_per_env_params_cycle_through_the_specs():
    env = _env()
    specs = [jaxsafe.load_spec(f"sg{i}") for i in (1, 2, 3)]
    p = adaptation.per_env_params(env, specs, 7)
    assert p.automaton.delta.shape == (7, 6, 8)
    for i in range(7):
        spec = specs[i % 3]
        got = np.asarray(p.automaton.delta[i])[: spec.num_states]
        np.testing.assert_array_equal(got, np.asarray(spec.delta))


def test_to_target_finds_the_first_evaluation_meeting_both_targets():
    metrics = {
        "eval_task_completion": np.array([[0.1, 0.9, 0.9], [0.0, 0.2, 0.3]]),
        "eval_violation": np.array([[0.0, 0.5, 0.05], [0.0, 0.0, 0.0]]),
        "steps": np.tile(np.arange(1, 7) * 100.0, (2, 1)),
        "violations": np.tile(np.arange(1, 7) * 3.0, (2, 1)),
    }
    out = adaptation.to_target(metrics, 2, 0.8, 0.1)
    np.testing.assert_array_equal(out["reached"], [True, False])
    np.testing.assert_array_equal(out["samples"], [600.0, np.inf])
    np.testing.assert_array_equal(out["violations"], [18.0, np.inf])


def test_spec_features_say_which_labels_violate_or_advance():
    aut = _env().make_params(jaxsafe.load_spec("sg3")).automaton
    f = np.asarray(ppo.automaton_features(aut, 1))  # q1: work_bench, iron advance; haz violates
    labels = list(GRIDWORLD_LABELLER.alphabet.names)
    danger, advance = f[:8], f[8:]
    assert {labels[i] for i in np.flatnonzero(danger)} == {"basalt_lava", "creeper"}
    assert {labels[i] for i in np.flatnonzero(advance)} == {"work_bench", "iron"}


@pytest.mark.slow
def test_adaptation_warm_starts_from_pretraining_and_reports_to_target():
    c = ppo.default_config()
    c.num_envs, c.num_steps, c.num_minibatches, c.update_epochs = 8, 32, 2, 1
    c.hidden, c.eval_every, c.eval_envs, c.eval_steps = 16, 2, 8, 30
    c.stage_steps = (8 * 32 * 4,)
    specs = [jaxsafe.load_spec(f"sg{i}") for i in (1, 2)]
    out = adaptation.run_adaptation(
        c, _env(), specs, jaxsafe.load_spec("sg3"), jax.random.split(jax.random.key(0), 2),
        env_params=GridParams(max_steps_in_episode=30),
    )  # fmt: skip
    # same keys, same plan: only the starting network differs
    assert not np.allclose(out["adapt"]["value_start"][:, 0], out["scratch"]["value_start"][:, 0])
    for name in ("adapt_to_target", "scratch_to_target"):
        r = out[name]
        assert r["samples"].shape == (2,)
        assert np.all(np.where(r["reached"], np.isfinite(r["samples"]), np.isinf(r["samples"])))
