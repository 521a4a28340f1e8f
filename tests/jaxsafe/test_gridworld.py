"""The Minecraft-inspired gridworld: layout, dynamics, slip, jitter, determinism, renderers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsafe.envs import GRIDWORLD_LABELLER, LABELS, GridParams, GridState, GridWorld
from jaxsafe.envs.gridworld import label_grid, render_rgb, render_text

# The paper's nominal map (jitter 0): A = start.
NOMINAL = """\
C . . I . L . D . .
. . . . . L . . . .
. . W . S L . . L L
. . . . . . . . . .
I . . . . C . . . B
. . A . . . . W . .
. B . . . B . . . .
. . . W . . . S . .
. . . . . . . . . .
S . . . I . . . . ."""

# The paper's object table with jitter i, transcribed independently of the env module.
TABLE = {
    "basalt_lava": lambda i: [(0, 5), (1, 5), (2, 5), (2, 8), (2, 9)],
    "creeper": lambda i: [(0, 0), (4 + i, 5)],
    "wood": lambda i: [(2, 2 + i), (7, 3 + i), (5 + i, 7)],
    "iron": lambda i: [(0, 3 + i), (4 + i, 0), (9, 4 + i)],
    "work_bench": lambda i: [(6 + i, 1), (6, 5 + i), (4 + i, 9)],
    "smith_table": lambda i: [(2 + i, 4), (9, 0), (7, 7 + i)],
    "diamond": lambda i: [(0, 7)],
}


def state(pos, jitter=0, time=0):
    return GridState(pos=jnp.array(pos, jnp.int32), jitter=jnp.int32(jitter), time=time)


def test_nominal_layout_matches_the_paper_map():
    env = GridWorld()
    _, s = env.reset_env(jax.random.key(0), GridParams(jitter_prob=0.0))
    assert render_text(s) == NOMINAL


@pytest.mark.parametrize("jitter", [-1, 0, 1])
def test_labels_follow_the_object_table_without_overlaps(jitter):
    expected = np.zeros((10, 10), int)
    cells = [(lab, cell) for lab, f in TABLE.items() for cell in f(jitter)]
    assert len({cell for _, cell in cells}) == len(cells) == 20  # no overlaps
    for lab, (r, c) in cells:
        expected[r, c] = LABELS.index(lab)
    assert expected[5, 2] == 0  # start is never labelled
    np.testing.assert_array_equal(label_grid(jnp.int32(jitter)), expected)
    # the labelling function agrees with the grid on every cell
    rows, cols = np.meshgrid(np.arange(10), np.arange(10), indexing="ij")
    pos = jnp.stack([rows.ravel(), cols.ravel()], -1)
    labels = jax.vmap(lambda p: GRIDWORLD_LABELLER(state(p, jitter)))(pos)
    np.testing.assert_array_equal(np.asarray(labels).reshape(10, 10), expected)


def test_moves_without_slip_follow_action_order_and_clip_at_edges():
    env, params = GridWorld(), GridParams(slip_prob=0.0)
    step = jax.jit(env.step_env)
    # right, up, left, down, stay from the middle and from corners
    moves = {0: (0, 1), 1: (-1, 0), 2: (0, -1), 3: (1, 0), 4: (0, 0)}
    for start in [(5, 2), (0, 0), (9, 9)]:
        for action, (dr, dc) in moves.items():
            obs, s, reward, term, _ = step(jax.random.key(0), state(start), action, params)
            want = (min(max(start[0] + dr, 0), 9), min(max(start[1] + dc, 0), 9))
            assert tuple(np.asarray(s.pos)) == want
            assert int(np.argmax(obs)) == want[0] * 10 + want[1] and obs.shape == (100,)
            assert float(reward) == 0.0 and not bool(term) and s.time == 1


def test_slip_and_jitter_frequencies_match_their_probabilities():
    env, params = GridWorld(), GridParams()
    keys = jax.random.split(jax.random.key(0), 20000)
    _, states = jax.vmap(env.reset_env, in_axes=(0, None))(keys, params)
    counts = {j: float(np.mean(np.asarray(states.jitter) == j)) for j in (-1, 0, 1)}
    assert abs(counts[-1] - 0.05) < 0.01 and abs(counts[1] - 0.05) < 0.01
    # always "stay": the agent moves only when it slips onto one of the 4 moving actions
    _, moved, *_ = jax.vmap(env.step_env, in_axes=(0, None, None, None))(
        keys, state((5, 2)), 4, params
    )
    moved_frac = float(np.mean(np.any(np.asarray(moved.pos) != [5, 2], axis=-1)))
    assert abs(moved_frac - 0.05 * 4 / 5) < 0.006


def test_rollouts_are_deterministic_under_a_key():
    env = GridWorld()

    @jax.jit
    def rollout(key):
        _, s = env.reset(key)

        def body(s, k):
            k1, k2 = jax.random.split(k)
            _, s, *_ = env.step(k1, s, jax.random.randint(k2, (), 0, 5))
            return s, s.pos

        return jax.lax.scan(body, s, jax.random.split(key, 50))[1]

    a, b, c = rollout(jax.random.key(3)), rollout(jax.random.key(3)), rollout(jax.random.key(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_episodes_truncate_after_max_steps():
    env, params = GridWorld(), GridParams(max_steps_in_episode=3)
    _, s = env.reset(jax.random.key(0), params)
    truncs = []
    for t in range(4):
        _, s, _, term, trunc, _ = env.step(jax.random.key(t), s, 4, params)
        truncs.append(bool(trunc))
        assert not bool(term)
    assert truncs == [False, False, True, False]


def test_rgb_renderer_colours_cells_and_marks_the_agent():
    img = np.asarray(jax.jit(render_rgb, static_argnums=1)(state((5, 2)), 8))
    assert img.shape == (80, 80, 3) and img.dtype == np.uint8
    assert (img[5 * 8 + 4, 2 * 8 + 4] == 0).all()  # agent centre is black
    assert (img[5 * 8, 2 * 8] != 0).any()  # agent cell corner keeps the background
    lava, creeper = img[0 * 8 + 1, 5 * 8 + 1], img[0 * 8 + 1, 0 * 8 + 1]
    assert not np.array_equal(lava, creeper)
