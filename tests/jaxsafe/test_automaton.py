"""Compiled automata: value-iteration potentials, padding, stacking for vmap, out-of-range."""

import collections
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsafe import (
    SpecError,
    SpecWarning,
    compile_spec,
    load_spec,
    pad_automaton,
    parse_spec,
    run_automaton,
    stack_automata,
    step_automaton,
)


def random_spec(rng, num_states, labels=("a", "b", "c", "d"), name="r"):
    names = [f"s{i}" for i in range(num_states - 1)] + ["bad"]
    trans = {
        names[i]: {
            lab: names[t]
            for lab, t in zip(labels, rng.integers(0, num_states, len(labels)), strict=True)
        }
        for i in range(num_states - 1)
    }
    accepting = [n for n in names[:-1] if rng.random() < 0.4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        return parse_spec(
            {
                "name": name,
                "alphabet": {"labels": list(labels)},
                "states": names,
                "initial": "s0",
                "violation": ["bad"],
                "accepting": accepting,
                "transitions": trans,
            }
        )


def bfs_distance(delta, targets, blocked):
    """Reference: fewest symbols from each state to a target, avoiding blocked states."""
    q = delta.shape[0]
    dist = np.full(q, np.inf)
    # reverse BFS from targets
    rev = collections.defaultdict(set)
    for s in range(q):
        if blocked[s] and not targets[s]:
            continue
        for t in delta[s]:
            rev[int(t)].add(s)
    queue = collections.deque(np.flatnonzero(targets).tolist())
    for t in queue:
        dist[t] = 0
    while queue:
        t = queue.popleft()
        for s in rev[t]:
            if np.isinf(dist[s]) and not (blocked[s] and not targets[s]):
                dist[s] = dist[t] + 1
                queue.append(s)
    return dist


@pytest.mark.parametrize("seed", range(4))
def test_value_iteration_potentials_match_bfs_distances(seed):
    rng = np.random.default_rng(seed)
    spec = random_spec(rng, 7)
    gamma = 0.9
    accept = np.asarray(compile_spec(spec, potential="accept", gamma=gamma).potential)
    d_acc = bfs_distance(spec.delta, spec.accepting, spec.violation)
    np.testing.assert_allclose(accept, np.where(np.isinf(d_acc), 0.0, gamma**d_acc), rtol=1e-6)
    safety = np.asarray(compile_spec(spec, potential="safety", gamma=gamma).potential)
    d_viol = bfs_distance(spec.delta, spec.violation, np.zeros_like(spec.violation))
    np.testing.assert_allclose(
        safety, np.where(np.isinf(d_viol), 1.0, 1.0 - gamma**d_viol), rtol=1e-6, atol=1e-7
    )
    assert not np.asarray(compile_spec(spec, potential="zero").potential).any()
    with pytest.raises(SpecError, match="unknown potential"):
        compile_spec(spec, potential="bogus")


def test_compiled_arrays_have_documented_shapes_and_dtypes():
    aut = compile_spec(load_spec("sg3"))
    assert aut.delta.shape == (6, 8) and aut.delta.dtype == jnp.int32
    assert aut.violation.shape == aut.accepting.shape == aut.valid.shape == (6,)
    assert aut.violation.dtype == jnp.bool_ and aut.potential.dtype == jnp.float32
    assert aut.initial.shape == () and int(aut.initial) == 0


def test_padding_keeps_behaviour_and_padding_states_are_inert():
    rng = np.random.default_rng(0)
    spec = random_spec(rng, 4)
    aut = compile_spec(spec)
    padded = pad_automaton(aut, 9)
    assert padded.num_states == 9
    assert np.asarray(padded.delta[4:]).tolist() == [[q] * 4 for q in range(4, 9)]
    assert not np.asarray(padded.valid[4:]).any() and not np.asarray(padded.violation[4:]).any()
    symbols = jnp.asarray(rng.integers(0, 4, 50))
    np.testing.assert_array_equal(run_automaton(aut, symbols), run_automaton(padded, symbols))
    with pytest.raises(SpecError, match="down to"):
        pad_automaton(aut, 2)


def test_stacked_specs_of_different_sizes_run_under_vmap_like_each_alone():
    rng = np.random.default_rng(1)
    specs = [random_spec(rng, n, name=f"r{n}") for n in (2, 3, 5, 8)]
    batch = stack_automata(specs)
    assert batch.delta.shape == (4, 8, 4) and batch.initial.shape == (4,)
    symbols = jnp.asarray(rng.integers(0, 4, (4, 40)))
    together = jax.jit(jax.vmap(run_automaton))(batch, symbols)
    for k, spec in enumerate(specs):
        alone = run_automaton(compile_spec(spec), symbols[k])
        np.testing.assert_array_equal(together[k], alone)


def test_stacking_specs_over_different_alphabets_is_an_error():
    rng = np.random.default_rng(2)
    a = random_spec(rng, 3, labels=("a", "b"), name="ab")
    b = random_spec(rng, 3, labels=("a", "c"), name="ac")
    with pytest.raises(SpecError, match="different alphabets"):
        stack_automata([a, b])


def test_out_of_range_symbols_are_clamped_and_flagged():
    aut = compile_spec(load_spec("sg0"))  # 8 labels; symbol 7 (diamond) keeps q0
    step = jax.jit(step_automaton)
    for symbol, expect_q, expect_flag in [
        (7, 0, False),
        (99, 0, True),
        (-3, 0, True),
        (1, 1, False),
    ]:
        q, flag = step(aut, jnp.int32(0), jnp.int32(symbol))
        assert (int(q), bool(flag)) == (expect_q, expect_flag), symbol


def test_propositions_encode_to_bitmask_on_host_and_under_jit():
    from jaxsafe import propositions_to_symbol

    assert int(propositions_to_symbol([True, False, True])) == 5  # host path (NumPy)
    np.testing.assert_array_equal(propositions_to_symbol(np.array([[0, 1], [1, 1]])), [2, 3])
    traced = jax.jit(lambda x: propositions_to_symbol([x > 0, x > 1, x > 2]))
    assert [int(traced(v)) for v in (0, 1, 2, 3)] == [0, 1, 3, 7]
    assert int(jax.jit(propositions_to_symbol)(jnp.array([False, True]))) == 2
