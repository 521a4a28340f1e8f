"""The paper's Minecraft-inspired slippery gridworld, in JAX with the gymnax 1.0 API.

Grid 10x10, cells ``(row, col)``; start (5, 2). Actions ``0..4`` = right (col+1), up (row-1),
left (col-1), down (row+1), stay; moves off the grid are clipped. With probability ``slip_prob``
(0.05) the action is replaced by a uniformly random one of the five. Each reset draws one jitter
offset ``i`` in {-1, 0, +1} (probabilities ``jitter_prob``, 1 - 2 ``jitter_prob``,
``jitter_prob``), shared by all jittered objects and not observed. The bare environment gives
reward 0 and never terminates; episodes are truncated after ``max_steps_in_episode`` (1000).

Observation: float32[100], one-hot of the agent's cell ``row * 10 + col``.

Labels (categorical alphabet :data:`LABELS`) come from the object table :data:`OBJECTS`,
transcribed from the authors' code; ``i`` marks the jittered coordinate::

    basalt_lava (0,5) (1,5) (2,5) (2,8) (2,9)      creeper (0,0) (4+i,5)
    wood (2,2+i) (7,3+i) (5+i,7)                   iron (0,3+i) (4+i,0) (9,4+i)
    work_bench (6+i,1) (6,5+i) (4+i,9)             smith_table (2+i,4) (9,0) (7,7+i)
    diamond (0,7)                                  safe: every other cell
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from jaxsafe.labelling import Labeller

__all__ = [
    "ACTIONS",
    "GRIDWORLD_LABELLER",
    "LABELS",
    "OBJECTS",
    "GridParams",
    "GridState",
    "GridWorld",
    "jitter_from_uniform",
    "label_at",
    "label_grid",
    "move",
    "render_rgb",
    "render_text",
    "slipped_action",
]

SIZE = 10
START = (5, 2)
LABELS = ("safe", "basalt_lava", "creeper", "wood", "iron", "work_bench", "smith_table", "diamond")
ACTIONS = ("right", "up", "left", "down", "stay")
MOVES = np.array([[0, 1], [-1, 0], [0, -1], [1, 0], [0, 0]], np.int32)  # [5, (drow, dcol)]

# (label, row, col, jittered axis: None, 0 = row, 1 = col)
OBJECTS: tuple[tuple[str, int, int, int | None], ...] = (
    ("basalt_lava", 0, 5, None), ("basalt_lava", 1, 5, None), ("basalt_lava", 2, 5, None),
    ("basalt_lava", 2, 8, None), ("basalt_lava", 2, 9, None),
    ("creeper", 0, 0, None), ("creeper", 4, 5, 0),
    ("wood", 2, 2, 1), ("wood", 7, 3, 1), ("wood", 5, 7, 0),
    ("iron", 0, 3, 1), ("iron", 4, 0, 0), ("iron", 9, 4, 1),
    ("work_bench", 6, 1, 0), ("work_bench", 6, 5, 1), ("work_bench", 4, 9, 0),
    ("smith_table", 2, 4, 0), ("smith_table", 9, 0, None), ("smith_table", 7, 7, 1),
    ("diamond", 0, 7, None),
)  # fmt: skip
_IDS = np.array([LABELS.index(o[0]) for o in OBJECTS], np.int32)  # [N]
_BASE = np.array([[o[1], o[2]] for o in OBJECTS], np.int32)  # [N, 2]
_JMASK = np.array([[o[3] == 0, o[3] == 1] for o in OBJECTS], np.int32)  # [N, 2]


@struct.dataclass
class GridState(environment.EnvState):
    """``pos`` int32[2] (row, col); ``jitter`` int32[] in {-1, 0, 1}; ``time`` steps so far."""

    pos: jax.Array
    jitter: jax.Array
    time: int


@struct.dataclass
class GridParams(environment.EnvParams):
    """``slip_prob``: chance the action is replaced by a uniform one; ``jitter_prob``: chance of
    each of the offsets -1 and +1 at reset."""

    slip_prob: float = 0.05
    jitter_prob: float = 0.05
    max_steps_in_episode: int = 1000


def _grid_np(jitter: int) -> np.ndarray:
    grid = np.zeros((SIZE, SIZE), np.int32)
    cells = _BASE + _JMASK * jitter
    grid[cells[:, 0], cells[:, 1]] = _IDS
    return grid


_GRIDS = np.stack([_grid_np(j) for j in (-1, 0, 1)])  # int32[3, 10, 10], indexed by jitter + 1


def object_cells(jitter: jax.Array) -> jax.Array:
    """int32[N, 2]: object cells for a jitter offset."""
    return jnp.asarray(_BASE) + jnp.asarray(_JMASK) * jnp.asarray(jitter, jnp.int32)


def label_at(pos: jax.Array, jitter: jax.Array) -> jax.Array:
    """int32[]: index into :data:`LABELS` of the cell ``pos`` (int32[2]) under ``jitter``.

    One gather from the three precomputed label grids (jitter -1, 0, +1)."""
    return jnp.asarray(_GRIDS)[jitter + 1, pos[0], pos[1]]


def label_grid(jitter: jax.Array) -> jax.Array:
    """int32[10, 10]: the label of every cell under ``jitter``."""
    cells = object_cells(jitter)
    return jnp.zeros((SIZE, SIZE), jnp.int32).at[cells[:, 0], cells[:, 1]].set(jnp.asarray(_IDS))


def move(
    pos: jax.Array,
    action: jax.Array,
    slip_u: jax.Array,
    slip_u_action: jax.Array,
    slip_prob: float | jax.Array = 0.05,
) -> jax.Array:
    """int32[2]: the cell after ``action`` from ``pos`` (int32[2]), clipped to the grid.

    With ``slip_u < slip_prob`` the action is replaced by ``floor(5 * slip_u_action)``
    (``slip_u``, ``slip_u_action`` uniform in [0, 1)). The one dynamics of the gridworld: the
    gymnax env and the jitted Q-learner (which draws its uniforms in bulk) both call it.
    """
    action = slipped_action(action, slip_u, slip_u_action, slip_prob)
    return jnp.clip(pos + jnp.asarray(MOVES)[action], 0, SIZE - 1)


def slipped_action(
    action: jax.Array,
    slip_u: jax.Array,
    slip_u_action: jax.Array,
    slip_prob: float | jax.Array = 0.05,
) -> jax.Array:
    """int32[]: the action actually taken: ``floor(5 * slip_u_action)`` if ``slip_u <
    slip_prob``, else ``action`` (the slip of :func:`move`, for callers that look the move up
    in a precomputed table)."""
    random_action = jnp.minimum((slip_u_action * len(ACTIONS)).astype(jnp.int32), 4)
    return jnp.where(slip_u < slip_prob, random_action, action)


def jitter_from_uniform(u: jax.Array, jitter_prob: float | jax.Array = 0.05) -> jax.Array:
    """int32[]: the episode's jitter offset from one uniform ``u``: -1 if ``u < p``, +1 if
    ``u < 2p``, else 0."""
    return jnp.where(u < jitter_prob, -1, jnp.where(u < 2 * jitter_prob, 1, 0)).astype(jnp.int32)


GRIDWORLD_LABELLER = Labeller.categorical(LABELS, lambda state: label_at(state.pos, state.jitter))
"""Labelling function of :class:`GridState` over :data:`LABELS` (for the safeguard wrapper)."""


class GridWorld(environment.Environment[GridState, GridParams]):
    """Minecraft-inspired slippery gridworld (see module docstring)."""

    @property
    def default_params(self) -> GridParams:
        return GridParams()

    def step_env(
        self, key: jax.Array, state: GridState, action: Any, params: GridParams
    ) -> tuple[jax.Array, GridState, jax.Array, jax.Array, dict[str, Any]]:
        slip_u, slip_u_action = jax.random.uniform(key, (2,))
        pos = move(state.pos, action, slip_u, slip_u_action, params.slip_prob)
        state = GridState(pos=pos, jitter=state.jitter, time=state.time + 1)
        return self.get_obs(state), state, jnp.float32(0.0), jnp.bool_(False), {}

    def reset_env(self, key: jax.Array, params: GridParams) -> tuple[jax.Array, GridState]:
        jitter = jitter_from_uniform(jax.random.uniform(key), params.jitter_prob)
        state = GridState(pos=jnp.asarray(START, jnp.int32), jitter=jitter, time=0)
        return self.get_obs(state), state

    def get_obs(self, state: GridState, params=None, key=None) -> jax.Array:
        return jax.nn.one_hot(state.pos[0] * SIZE + state.pos[1], SIZE * SIZE, dtype=jnp.float32)

    def is_terminated(self, state: GridState, params: GridParams) -> jax.Array:
        return jnp.bool_(False)

    @property
    def name(self) -> str:
        return "MinecraftGrid-v0"

    @property
    def num_actions(self) -> int:
        return len(ACTIONS)

    def action_space(self, params: GridParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(len(ACTIONS))

    def observation_space(self, params: GridParams) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (SIZE * SIZE,), jnp.float32)

    def state_space(self, params: GridParams) -> spaces.Dict:
        return spaces.Dict(
            {
                "pos": spaces.Box(0, SIZE - 1, (2,), jnp.int32),
                "jitter": spaces.Box(-1, 1, (), jnp.int32),
                "time": spaces.Discrete(params.max_steps_in_episode),
            }
        )


_CHARS = {"safe": ".", "basalt_lava": "L", "creeper": "C", "wood": "W", "iron": "I",
          "work_bench": "B", "smith_table": "S", "diamond": "D"}  # fmt: skip
_COLOURS = np.array(
    [
        [235, 235, 225],  # safe
        [200, 60, 20],  # basalt_lava
        [40, 160, 40],  # creeper
        [140, 90, 40],  # wood
        [150, 150, 165],  # iron
        [230, 180, 60],  # work_bench
        [90, 90, 200],  # smith_table
        [60, 220, 230],  # diamond
    ],
    np.uint8,
)


def render_text(state: GridState) -> str:
    """The grid as 10 lines of characters (``A`` = agent; legend in the module docstring)."""
    grid = np.asarray(label_grid(state.jitter))
    rows = [[_CHARS[LABELS[c]] for c in row] for row in grid]
    r, c = (int(x) for x in np.asarray(state.pos))
    rows[r][c] = "A"
    return "\n".join(" ".join(row) for row in rows)


def render_rgb(state: GridState, cell_px: int = 16) -> jax.Array:
    """uint8[10 * cell_px, 10 * cell_px, 3] image; the agent is a black square. Jittable."""
    img = jnp.asarray(_COLOURS)[label_grid(state.jitter)]  # [10, 10, 3]
    agent = jnp.zeros((SIZE, SIZE), bool).at[state.pos[0], state.pos[1]].set(True)
    img = jnp.repeat(jnp.repeat(img, cell_px, 0), cell_px, 1)
    inner = (jnp.arange(SIZE * cell_px) % cell_px) // max(cell_px // 4, 1)
    inner = (inner >= 1) & (inner <= 2)  # middle half of each cell
    mark = jnp.repeat(jnp.repeat(agent, cell_px, 0), cell_px, 1) & inner[:, None] & inner[None]
    return jnp.where(mark[..., None], jnp.uint8(0), img)
