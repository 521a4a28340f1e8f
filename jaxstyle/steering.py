"""Steering and interpolation of style vectors, measured on games the model plays.

* **Property delta** — for players ``P`` with a property (say, a high capture weight),
  ``Δ_P = mean_{p∈P} s_p − mean_{p} s_p``; the steered vector is ``s + λ Δ_P``
  (applied to the routing logits ``Z``).
* **Interpolation** — ``s(λ) = (1 − λ) s_weak + λ s_strong``.

:func:`self_play` plays many games at once with the style model: every game is a
python-chess board on the host, and at each ply all unfinished games are encoded and
evaluated in **one jitted call** (each row with its own style vector), moves are sampled
on the device with the Gumbel-max trick. The steered side's moves are then summarised by
:func:`game_properties`: the rate of every style feature (:mod:`jaxstyle.chess.
style_features`: capture rate, piece usage, …) and the castling ply.
"""

from __future__ import annotations

import dataclasses
import functools

import chess
import jax
import numpy as np

from jaxstyle import training
from jaxstyle.chess.encoding import board_planes, index_to_move, legal_mask
from jaxstyle.chess.evaluator import analyse_moves
from jaxstyle.chess.style_features import FEATURES, move_features


def property_delta(vectors, has_property) -> np.ndarray:
    """``float32 [R]``: mean style vector of the players with the property minus the mean of
    all players (``vectors [P, R]``, ``has_property bool [P]``)."""
    vectors = np.asarray(vectors, np.float32)
    has_property = np.asarray(has_property, bool)
    if not has_property.any():
        raise ValueError("no player has the property; the delta is undefined")
    return vectors[has_property].mean(0) - vectors.mean(0)


def steer(vector, delta, lambdas) -> np.ndarray:
    """``[L, R]``: ``s + λ Δ`` for every ``λ`` in ``lambdas``."""
    lam = np.asarray(lambdas, np.float32)[:, None]
    return np.asarray(vector, np.float32)[None] + lam * np.asarray(delta, np.float32)[None]


def interpolate(weak, strong, lambdas) -> np.ndarray:
    """``[L, R]``: ``(1 − λ) s_weak + λ s_strong``."""
    lam = np.asarray(lambdas, np.float32)[:, None]
    return (1 - lam) * np.asarray(weak, np.float32)[None] + lam * np.asarray(strong, np.float32)


_MOVE_CACHE: dict = {}


def _move_fn(graphdef):
    if graphdef not in _MOVE_CACHE:

        @jax.jit
        def fn(params, planes, legal, routing, key, temperature):
            model = training.merge_model(graphdef, params)
            logits = model(planes, legal, routing=routing) / temperature
            return jax.random.categorical(key, logits)

        _MOVE_CACHE[graphdef] = fn
    return _MOVE_CACHE[graphdef]


@dataclasses.dataclass
class SelfPlay:
    """Games from :func:`self_play`: ``uci[g]`` the moves of game ``g``; ``steered_color[g]``
    the colour (``chess.WHITE``/``BLACK``) that played with the game's steered vector."""

    uci: list[list[str]]
    steered_color: list[bool]


def self_play(
    model,
    steered,
    opponent,
    *,
    games_per_vector: int,
    max_plies: int = 60,
    temperature: float = 1.0,
    seed: int = 0,
) -> SelfPlay:
    """Plays ``games_per_vector`` games for each steered vector, all at once.

    Args:
      model: a :class:`~jaxstyle.model.StylePolicy`.
      steered: ``[V, R]`` style vectors to measure; opponent: ``[R]`` the other side.
      games_per_vector: games per steered vector (colours alternate).
      max_plies: games stop after this many half-moves (or at mate / stalemate / a draw).
      temperature: the policy's softmax temperature.
    Returns:
      :class:`SelfPlay` with ``V · games_per_vector`` games, vector ``v``'s games at
      ``v · games_per_vector …``. One jitted model call per ply serves every running game;
      the batch is padded to a fixed size so it compiles once.
    """
    steered = np.asarray(steered, np.float32)
    opponent = np.asarray(opponent, np.float32)
    n = len(steered) * games_per_vector
    own = np.repeat(steered, games_per_vector, axis=0)  # [n, R]
    colors = [g % 2 == 0 for g in range(n)]  # True = steered side is White
    boards = [chess.Board() for _ in range(n)]
    moves: list[list[str]] = [[] for _ in range(n)]
    graphdef, params = training.split_model(model)
    fn = _move_fn(graphdef)
    key = jax.random.PRNGKey(seed)
    planes = np.zeros((n, 18, 8, 8), np.uint8)
    legal = np.zeros((n, legal_mask(chess.Board()).shape[0]), bool)
    for ply in range(max_plies):
        live = [g for g in range(n) if not boards[g].is_game_over(claim_draw=False)]
        if not live:
            break
        for g in live:
            planes[g] = board_planes(boards[g])
            legal[g] = legal_mask(boards[g])
        routing = np.where(
            np.array([boards[g].turn == colors[g] for g in range(n)])[:, None], own, opponent
        )
        choice = np.asarray(
            fn(params, planes, legal, routing, jax.random.fold_in(key, ply), temperature)
        )
        for g in live:
            move = index_to_move(boards[g], int(choice[g]))
            moves[g].append(move.uci())
            boards[g].push(move)
    return SelfPlay(moves, colors)


def game_properties(games: SelfPlay, games_per_vector: int) -> dict[str, np.ndarray]:
    """Per steered vector, over its side's moves: ``{feature: rate [V]}`` for every style
    feature, ``"castled" [V]`` (share of games in which it castled) and ``"castle_ply" [V]``
    (mean half-move of its castling among those games; NaN if it never castled)."""
    n = len(games.uci)
    v = n // games_per_vector
    counts = np.zeros((v, len(FEATURES)))
    moves = np.zeros(v)
    castled = np.zeros(v)
    castle_plies: list[list[int]] = [[] for _ in range(v)]
    for g in range(n):
        slot = g // games_per_vector
        board = chess.Board()
        for ply, uci in enumerate(games.uci[g]):
            move = chess.Move.from_uci(uci)
            if board.turn == games.steered_color[g]:
                table = analyse_moves(board)
                counts[slot] += move_features(table)[table.moves.index(move)]
                moves[slot] += 1
                if board.is_castling(move):
                    castled[slot] += 1
                    castle_plies[slot].append(ply)
            board.push(move)
    out = {name: counts[:, i] / np.maximum(moves, 1) for i, name in enumerate(FEATURES)}
    out["castled"] = castled / games_per_vector
    out["castle_ply"] = np.array([np.mean(p) if p else np.nan for p in castle_plies])
    return out


def strong_agreement(model, weak, strong, positions: dict, lambdas) -> np.ndarray:
    """``float [L]``: top-1 agreement of ``s(λ) = (1−λ) s_weak + λ s_strong`` with the
    strong player's own moves on ``positions`` (``planes``, ``legal_mask``, ``move``)."""
    n = len(positions["move"])
    out = []
    for z in interpolate(weak, strong, lambdas):
        top1, _ = training.score_moves(
            model,
            positions["planes"],
            positions["legal_mask"],
            positions["move"],
            routing=np.repeat(z[None], n, 0),
        )
        out.append(float((top1 == np.asarray(positions["move"])).mean()))
    return np.array(out)


def _line_figure(x, series: dict, xlabel: str, ylabel: str, title: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    for label, y in series.items():
        ax.plot(x, y, marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


steering_figure = functools.partial(_line_figure, xlabel="λ (s + λΔ)")
steering_figure.__doc__ = """``Figure``: property vs ``λ`` — ``steering_figure(lambdas,
{label: values}, ylabel=..., title=...)``."""

interpolation_figure = functools.partial(
    _line_figure, xlabel="λ  ((1−λ) s_weak + λ s_strong)", ylabel="agreement with strong player"
)
interpolation_figure.__doc__ = """``Figure``: agreement vs ``λ`` — ``interpolation_figure(
lambdas, {label: values}, title=...)``."""
