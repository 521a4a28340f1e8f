"""Potential-based shaping keeps the optimal policy and never pays for a violation.

Small product MDPs (a slippery 4x4 grid with random labels x a spec) are solved exactly by
value iteration in NumPy; rewards come from the library's own array-level safeguard step
(:func:`jaxsafe.wrappers.safeguard_step`, fed NumPy arrays).
"""

import types

import numpy as np
import pytest

from jaxsafe import REWARD_MODES, load_spec, parse_spec
from jaxsafe.automaton import as_numpy, compile_spec
from jaxsafe.envs import LABELS
from jaxsafe.wrappers import safeguard_step
from tests.jaxsafe.helpers import REACH

SIDE, SLIP = 4, 0.2
MOVES = np.array([[0, 1], [-1, 0], [0, -1], [1, 0], [0, 0]])


def random_grid(seed):
    """int[16] labels: mostly safe, a few hazards, wood and smith tables; start cell 0 safe."""
    rng = np.random.default_rng(seed)
    probs = np.array([0.55, 0.1, 0.1, 0.1, 0.0, 0.0, 0.15, 0.0])
    labels = rng.choice(len(LABELS), size=SIDE * SIDE, p=probs)
    labels[0] = 0
    return labels


def cell_transitions():
    """float[C, A, C]: intended move with 1 - SLIP, a uniform action with SLIP."""
    c = SIDE * SIDE
    rows, cols = np.divmod(np.arange(c), SIDE)
    nxt = np.empty((c, 5), int)
    for a, (dr, dc) in enumerate(MOVES):
        nxt[:, a] = np.clip(rows + dr, 0, SIDE - 1) * SIDE + np.clip(cols + dc, 0, SIDE - 1)
    p = np.zeros((c, 5, c))
    for a in range(5):
        p[np.arange(c), a, nxt[:, a]] += 1 - SLIP
        for b in range(5):
            p[np.arange(c), a, nxt[:, b]] += SLIP / 5
    return p


def product_q_values(spec, labels, mode, potential, gamma):
    """Optimal Q[C, Q, A] of the product MDP by value iteration, and the per-transition
    reward and termination arrays [C, Q, C] (they do not depend on the action)."""
    aut = as_numpy(compile_spec(spec, potential=potential, gamma=gamma))
    numbers = types.SimpleNamespace(**REWARD_MODES[mode], gamma=gamma)
    nq, c = spec.num_states, SIDE * SIDE
    q = np.broadcast_to(np.arange(nq)[None, :, None], (c, nq, c))
    symbol = np.broadcast_to(labels[None, None, :], (c, nq, c))
    out = safeguard_step(aut, numbers, q, symbol)
    p = cell_transitions()  # [C, A, C']
    v = np.zeros((c, nq))
    for _ in range(3000):
        cont = np.where(out.terminated, 0.0, v[np.arange(c)[None, None, :], out.q_kept])
        future = out.reward + gamma * cont  # [C, Q, C']
        qv = np.einsum("xay,xqy->xqa", p, future)
        v_new = qv.max(-1)
        if np.max(np.abs(v_new - v)) < 1e-12:
            break
        v = v_new
    return qv, out, aut


def optimal_sets(qv, tol=1e-7):
    return qv >= qv.max(-1, keepdims=True) - tol


@pytest.mark.parametrize("gamma", [0.9, 0.99])
@pytest.mark.parametrize("potential", ["accept", "safety"])
@pytest.mark.parametrize("spec_name", ["reach", "sg3"])
def test_shaping_keeps_the_optimal_policy_of_the_paper_reward(spec_name, potential, gamma):
    spec = parse_spec(REACH) if spec_name == "reach" else load_spec("sg3")
    live = ~np.asarray(spec.violation)
    for seed in range(3):
        labels = random_grid(seed)
        plain, _, _ = product_q_values(spec, labels, "paper", potential, gamma)
        shaped, _, aut = product_q_values(spec, labels, "shaping", potential, gamma)
        np.testing.assert_array_equal(optimal_sets(plain)[:, live], optimal_sets(shaped)[:, live])
        # Ng et al.: Q_shaped(s, a) = Q(s, a) - Phi(s), so every action keeps its rank
        phi = aut.potential[None, :, None]
        np.testing.assert_allclose((shaped + phi)[:, live], plain[:, live], atol=2e-5)


@pytest.mark.parametrize("gamma", [0.9, 0.99])
@pytest.mark.parametrize("potential", ["accept", "safety", "zero"])
def test_a_violation_never_pays_more_than_a_safe_step(potential, gamma):
    spec = load_spec("sg3")
    _, out, _ = product_q_values(spec, random_grid(0), "shaping", potential, gamma)
    for q in np.flatnonzero(~np.asarray(spec.violation)):
        viol = out.violation[:, q, :]
        if viol.any() and (~viol).any():
            assert out.reward[:, q, :][viol].max() < out.reward[:, q, :][~viol].min()


@pytest.mark.parametrize("mode", ["paper", "shaping"])
def test_surviving_beats_dying_at_once_even_at_gamma_099(mode):
    """From the start of a grid with a hazard next door, the optimal first move never steps
    onto it, and staying alive is worth more than the immediate violation."""
    spec = load_spec("sg0")
    labels = np.zeros(SIDE * SIDE, int)
    labels[1] = LABELS.index("basalt_lava")  # right of the start cell
    qv, _, _ = product_q_values(spec, labels, mode, "accept", 0.99)
    right, stay = 0, 4
    assert qv[0, 0, stay] > qv[0, 0, right]
    assert np.argmax(qv[0, 0]) != right
