"""Jitted progressive-safeguard Q-learning: step-exact against a NumPy reference learner
written here from the authors' ``minecraft.py`` (faithful) and from the corrected rules; the
stage schedule, task states, evaluation and vmap-over-seeds behaviour."""

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsafe import load_spec
from jaxsafe.agents import (
    AUTHORS_EPISODES_PER_STAGE,
    QLearningConfig,
    make_qlearning,
    stage_episodes,
    stage_summary,
    task_states,
)
from jaxsafe.agents.qlearning import _init_values, draw_uniforms
from jaxsafe.envs import label_grid

SPECS = [load_spec(f"sg{i}") for i in range(4)]
MOVES = np.array([[0, 1], [-1, 0], [0, -1], [1, 0], [0, 0]])
SINK_SLOT = 5
GRIDS = {j: np.asarray(label_grid(jnp.int32(j))) for j in (-1, 0, 1)}


def fma(a, b, c):
    """float32 ``a * b + c`` rounded once, as XLA:CPU contracts it."""
    return np.float32(np.float64(a) * np.float64(b) + np.float64(c))


def jitter_of(u):
    return -1 if u < 0.05 else (1 if u < 0.1 else 0)


def authors_init(rows, seen, target, stage):
    """The authors' initialisation of a new ``(s', target)``, literally (``minecraft.py``): the
    entry is created with zeros, then ``for i in range(stage)``, every key ``(s', i)`` in the
    dict (the new entry included) is added to it and counted; the sum is divided by the count.
    ``rows`` float[S, A], ``seen`` bool[S] (before the entry is created)."""
    entry, counter = np.zeros(rows.shape[1], np.float32), 0
    for i in range(stage):
        if i == target:  # the new entry is already a key: it is added to itself
            counter += 1
            entry = entry + entry
        elif seen[i]:
            counter += 1
            entry = entry + rows[i]
    return entry / counter if counter else entry


def reference_learner(key, episodes, cfg):
    """NumPy Q-learning over (cell, slot) fed the jitted learner's uniform stream.

    Faithful: update the greedy action; a new (s', q') starts at the authors' mean of the
    Q(s', i) for i < stage index (:func:`authors_init`) and bootstraps max(0, max init); the
    sink bootstraps like any state. Corrected: update the action taken; a new (s', q') starts
    at Q(s', q) when seen, else the mean over seen non-sink slots; no bootstrap from the sink.
    Updates use one rounding per ``a * b + c`` (:func:`fma`). Returns (Q float32[100, 6, 5],
    seen bool[100, 6], per-episode violations).
    """
    q_tab = np.zeros((100, 6, 5), np.float32)
    seen = np.zeros((100, 6), bool)
    seen[52, 0] = True
    k_reset, key = jax.random.split(key)
    jitter = jitter_of(float(jax.random.uniform(k_reset)))
    pos, q, steps, episode, violations = np.array([5, 2]), 0, 0, 0, []
    alpha, gamma = np.float32(cfg.alpha), np.float32(cfg.gamma)
    stops = np.cumsum(episodes)
    for stage, spec in enumerate(SPECS):
        slot = np.where(spec.violation, SINK_SLOT, np.arange(spec.num_states))
        q = spec.initial
        while episode < stops[stage]:
            key, sub = jax.random.split(key)
            for u in np.asarray(draw_uniforms(sub)):
                if episode >= stops[stage]:
                    break  # the rest of the chunk is masked
                cell, s = pos[0] * 10 + pos[1], slot[q]
                vals = q_tab[cell, s]
                ties = np.flatnonzero(vals == vals.max())
                greedy = int(ties[min(int(u[4] * len(ties)), len(ties) - 1)])
                action = min(int(u[1] * 5), 4) if u[0] < cfg.epsilon else greedy
                if u[2] < 0.05:  # slip
                    action_moved = min(int(u[3] * 5), 4)
                else:
                    action_moved = action
                pos = np.clip(pos + MOVES[action_moved], 0, 9)
                q_next = spec.delta[q, GRIDS[jitter][pos[0], pos[1]]]
                viol = bool(spec.violation[q_next])
                reward = np.float32(-0.1 if viol else 0.1)
                cell2, s2 = pos[0] * 10 + pos[1], slot[q_next]
                new = not seen[cell2, s2]
                if cfg.faithful:
                    init = authors_init(q_tab[cell2], seen[cell2], s2, stage)
                else:
                    use = [i for i in range(SINK_SLOT) if seen[cell2, i]]
                    init = q_tab[cell2, use].mean(0) if use else np.zeros(5, np.float32)
                if not cfg.faithful and seen[cell2, s]:  # inherit from the state it came from
                    init = q_tab[cell2, s].copy()
                if new:
                    q_tab[cell2, s2], seen[cell2, s2] = init, True
                if cfg.faithful:
                    boot = max(0.0, init.max()) if new else q_tab[cell2, s2].max()
                else:
                    boot = 0.0 if viol else q_tab[cell2, s2].max()
                u_act = greedy if cfg.faithful else action
                old = q_tab[cell, s, u_act]
                target = fma(gamma, boot, reward)
                q_tab[cell, s, u_act] = fma(alpha, target, (1 - alpha) * old)
                q, steps = q_next, steps + 1
                if viol or steps >= cfg.max_steps:
                    violations.append(viol)
                    pos, q, steps, episode = np.array([5, 2]), spec.initial, 0, episode + 1
                    jitter = jitter_of(u[5])
    return q_tab, seen, np.array(violations)


@pytest.mark.parametrize(
    "faithful,writes", [(True, "scatter"), (True, "slices"), (False, "scatter"), (False, "slices")]
)
def test_jitted_learner_matches_the_numpy_reference_step_for_step(faithful, writes):
    # short episodes: near the 1.0 fixed point, ulp-level rounding would decide greedy ties
    cfg = QLearningConfig(max_steps=60, faithful=faithful, unroll=1, table_writes=writes)
    episodes = (6, 6, 6, 2)
    learner = make_qlearning(SPECS, episodes, cfg)
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    state = jax.device_get(learner.run(learner.init(keys)))
    violations = []
    for i in range(2):
        q_ref, seen_ref, viol_ref = reference_learner(keys[i], episodes, cfg)
        violations.append(viol_ref)
        np.testing.assert_array_equal(state.seen[i], seen_ref)
        np.testing.assert_allclose(state.q_table[i], q_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(state.ep_violation[i], viol_ref)
    assert np.concatenate(violations).size == 2 * sum(episodes)


def test_faithful_initialisation_counts_the_new_entry_as_the_authors_loop_does():
    # every (seen pattern, new slot, stage) of a 6-slot cell against the literal loop; e.g. a
    # new q1 in stage 3 with q0 and q2 seen starts at (2 Q0 + Q2) / 3, not (Q0 + Q2) / 2
    rng = np.random.default_rng(0)
    init = jax.jit(jax.vmap(_init_values, in_axes=(None, 0, None, 0, None, 0)), static_argnums=4)
    tables, stages, targets, expected = [], [], [], []
    for pattern in range(2**SINK_SLOT):
        seen = np.array([(pattern >> i) & 1 for i in range(SINK_SLOT)] + [1], bool)
        rows = rng.uniform(-0.1, 1.0, (6, 5)).astype(np.float32)
        for target in [t for t in range(6) if not seen[t]] + [SINK_SLOT]:
            for stage in range(4):
                table = np.zeros((1, 6, 6), np.float32)
                table[0, :, :5], table[0, :, 5] = rows, seen
                if target != SINK_SLOT:
                    table[0, target] = 0.0  # not seen
                tables.append(table)
                stages.append(stage)
                targets.append(target)
                expected.append(authors_init(rows, table[0, :, 5] > 0.5, target, stage))
    got = init(True, jnp.asarray(np.stack(tables)), 0, jnp.asarray(stages), 6, jnp.asarray(targets))
    np.testing.assert_allclose(np.asarray(got), np.stack(expected), rtol=1e-6, atol=1e-7)
    # e.g. stage 3, new q1, q0 and q2 seen
    rows = np.array([[0.9] * 5, [0.0] * 5, [0.3] * 5, [0.0] * 5, [0.0] * 5, [0.0] * 5], np.float32)
    seen = np.array([1, 0, 1, 0, 0, 1], np.float32)
    table = jnp.asarray(np.concatenate([rows, seen[:, None]], 1)[None])
    np.testing.assert_allclose(_init_values(True, table, 0, 3, 6, 1), (2 * 0.9 + 0.3) / 3)
    np.testing.assert_allclose(_init_values(False, table, 0, 3, 6, 1), (0.9 + 0.3) / 2)


def test_authors_schedule_gives_the_last_safeguard_two_episodes():
    assert (
        stage_episodes(5000, 4, faithful=True) == AUTHORS_EPISODES_PER_STAGE == (1666,) * 3 + (2,)
    )
    assert stage_episodes(5000, 4, faithful=False) == (1250,) * 4
    assert stage_episodes(10, 3, faithful=False) == (3, 3, 4)
    with pytest.raises(ValueError, match="cannot cover"):
        stage_episodes(3, 4, faithful=True)


def test_task_states_are_the_leaves_of_the_automaton():
    names = lambda s: [s.states[i] for i in np.flatnonzero(task_states(s))]
    assert names(SPECS[3]) == ["q2", "q4"]
    assert names(SPECS[1]) == ["q1"] and names(SPECS[0]) == ["q0"]


def test_training_and_evaluation_report_per_seed_statistics():
    learner = make_qlearning(SPECS, (5, 5, 5, 5), QLearningConfig(max_steps=80, unroll=1))
    state = learner.run(learner.init(jax.random.split(jax.random.PRNGKey(0), 3)))
    summary = stage_summary(learner, state)
    assert summary["violations_per_stage"].shape == (3, 4)
    np.testing.assert_array_equal(
        summary["violations_per_stage"].sum(1), summary["train_violating_episodes"]
    )
    steps = np.asarray(state.ep_steps)
    assert (steps >= 1).all() and (steps <= 80).all()  # every episode recorded, capped
    # an episode ends on a violation or at the cap
    assert np.all(np.asarray(state.ep_violation) | (steps == 80))
    metrics = jax.device_get(learner.evaluate(state, jax.random.PRNGKey(1), 8))
    np.testing.assert_allclose(metrics["test_success_pct"] + metrics["test_violation_pct"], 100.0)
    assert metrics["test_success_pct"].shape == (3,)
    assert (metrics["task_completion_pct"] <= metrics["test_success_pct"]).all()
    with pytest.raises(ValueError, match="epsilon"):
        QLearningConfig(epsilon=1.5)


def test_protocols_of_one_variant_share_one_compiled_program():
    """Curriculum or zero-shot, any specs and budgets: data. The faithful/corrected rule is
    static (folding the other rule away halves the step), so the two variants are two programs."""
    from jaxsafe.agents import qlearning

    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    cfg = QLearningConfig(max_steps=60, unroll=1)
    faithful = dataclasses.replace(cfg, faithful=True)
    zero_shot = dict(task_index=[0, 0, 0, 0])
    variants = [
        make_qlearning(SPECS, (6, 6, 6, 2), cfg),
        make_qlearning(SPECS, (5, 5, 5, 5), cfg),
        make_qlearning([SPECS[3]] * 4, (5, 5, 5, 5), cfg, **zero_shot),
        make_qlearning(SPECS, (5, 5, 5, 5), faithful),
        make_qlearning([SPECS[3]] * 4, (6, 6, 6, 2), faithful, **zero_shot),
    ]
    sizes = []
    for learner in variants:
        state = jax.block_until_ready(learner.train_stage(learner.init(keys), 0))
        assert int(np.asarray(state.episode).min()) == learner.curriculum.episodes_per_stage[0]
        sizes.append(qlearning._train_stage_jit._cache_size())
    assert sizes[1] == sizes[2] == sizes[0]  # corrected: one program
    assert sizes[4] == sizes[3] <= sizes[0] + 1  # faithful: one more at most (maybe cached)
    assert variants[1].curriculum.episodes_per_stage == (5, 5, 5, 5)


def test_greedy_breaks_exact_ties_uniformly_with_one_draw():
    from jaxsafe.agents.qlearning import _greedy

    values = jnp.asarray([1.0, 1.0, 0.5, 1.0, -2.0])
    u = jnp.linspace(0.0, 1.0, 3000, endpoint=False)
    picks = np.asarray(jax.vmap(_greedy, in_axes=(0, None))(u, values))
    np.testing.assert_array_equal(np.bincount(picks, minlength=5), [1000, 1000, 0, 1000, 0])
    assert int(_greedy(jnp.float32(0.99), jnp.asarray([0.0, 0.0, 0.0, 0.0, 3.0]))) == 4


def test_chunk_uniforms_are_16_bit_and_cover_the_unit_interval():
    u = np.asarray(draw_uniforms(jax.random.PRNGKey(0)))
    assert u.min() >= 0.0 and u.max() < 1.0
    np.testing.assert_array_equal(u * 65536, np.round(u * 65536))  # k / 2**16
    assert abs(u.mean() - 0.5) < 0.02 and abs((u < 0.1).mean() - 0.1) < 0.02


def test_both_table_write_forms_equal_a_numpy_reference_in_order():
    from jaxsafe.agents.qlearning import _write_rows

    rng = np.random.default_rng(0)
    table = rng.normal(size=(3, 7, 4, 6)).astype(np.float32)
    cells = np.array([[2, 5], [1, 1], [6, 0]], np.int32)
    slots = np.array([[3, 0], [2, 2], [1, 1]], np.int32)  # seed 1 writes one entry twice
    rows = rng.normal(size=(3, 2, 6)).astype(np.float32)
    rows[1, 1] = rows[1, 0]  # as the step writes it: both rows agree when they meet
    expected = table.copy()
    for n in range(3):
        for j in range(2):
            expected[n, cells[n, j], slots[n, j]] = rows[n, j]
    for slices in (False, True):
        got = jax.jit(partial(_write_rows, slices=slices))(table, cells, slots, rows)
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="table_writes"):
        QLearningConfig(table_writes="dense")
