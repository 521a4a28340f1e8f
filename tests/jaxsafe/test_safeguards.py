"""The paper's safeguards SG0-SG3: every transition of the paper's tables, and label walks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsafe import compile_spec, load_spec, run_automaton
from jaxsafe.envs import LABELS

X = "violation"
HAZ = {"basalt_lava", "creeper"}


def paper_next(sg: int, q: str, label: str) -> str:
    """The paper's tables (section 3.2 of the notes), written as plain if-chains."""
    if q == X:
        return X
    if sg == 0:
        return X if label in HAZ else "q0"
    if q == "q0":
        return X if label in HAZ else ("q1" if label == "wood" else "q0")
    if q == "q1":
        if label in HAZ:
            return X
        if sg >= 2 and label == "work_bench":
            return "q2"
        if sg == 3 and label == "iron":
            return "q3"
        return "q1"
    if q == "q2":
        return X if label == "creeper" else "q2"  # lava allowed
    if q == "q3":
        return X if label in HAZ else ("q4" if label == "smith_table" else "q3")
    if q == "q4":
        return X if label == "basalt_lava" else "q4"  # creeper allowed
    raise AssertionError(q)


@pytest.mark.parametrize("sg", [0, 1, 2, 3])
def test_every_transition_matches_the_paper_table(sg):
    spec = load_spec(f"sg{sg}")
    assert spec.alphabet.names == LABELS
    expected_states = [f"q{i}" for i in range({0: 1, 1: 2, 2: 3, 3: 5}[sg])] + [X]
    assert list(spec.states) == expected_states
    assert spec.states[spec.initial] == "q0"
    for q in spec.states:
        for label in LABELS:
            assert spec.step(q, label) == paper_next(sg, q, label), (sg, q, label)
    # every non-sink state is accepting; the sink is the only violation state
    assert spec.accepting.tolist() == [s != X for s in spec.states]
    assert spec.violation.tolist() == [s == X for s in spec.states]


WALKS = [
    # (safeguard, labels read, state names after each label)
    (0, ["safe", "wood", "creeper", "safe"], ["q0", "q0", X, X]),
    (1, ["wood", "iron", "basalt_lava"], ["q1", "q1", X]),
    (
        2,
        ["wood", "work_bench", "basalt_lava", "basalt_lava", "creeper"],
        ["q1", "q2", "q2", "q2", X],
    ),
    (2, ["work_bench", "wood", "basalt_lava"], ["q0", "q1", X]),
    (3, ["wood", "iron", "smith_table", "creeper", "basalt_lava"], ["q1", "q3", "q4", "q4", X]),
    (3, ["wood", "work_bench", "iron", "basalt_lava", "creeper"], ["q1", "q2", "q2", "q2", X]),
    (3, ["wood", "iron", "creeper"], ["q1", "q3", X]),
    (3, ["smith_table", "iron", "diamond", "wood"], ["q0", "q0", "q0", "q1"]),
]


@pytest.mark.parametrize("sg, labels, states", WALKS)
def test_label_walks_step_through_expected_states_under_jit(sg, labels, states):
    spec = load_spec(f"sg{sg}")
    aut = compile_spec(spec)
    symbols = jnp.array([LABELS.index(lab) for lab in labels])
    visited = jax.jit(run_automaton)(aut, symbols)
    assert [spec.states[q] for q in np.asarray(visited)] == states


def test_paper_safeguards_potential_is_one_off_the_sink():
    for sg in range(4):
        spec = load_spec(f"sg{sg}")
        phi = np.asarray(compile_spec(spec, potential="accept").potential)
        np.testing.assert_allclose(phi, np.where(spec.violation, 0.0, 1.0))
