"""Synthetic chess players with a known style, and a resumable parallel game generator.

One name for three modules, one job each:

- :mod:`~jaxstyle.chess.players` — archetypes, :class:`GeneratorConfig`, :class:`PlayerStyle`,
  :func:`make_players`, ``players.json`` ground truth;
- :mod:`~jaxstyle.chess.play` — repertoire, move logits, :func:`play_game`, PGN text;
- :mod:`~jaxstyle.chess.generation` — game schedule, parallel resumable :func:`generate`.

``P(m | x, p) ∝ exp(−Δ(x, m)/τ_p + θ_p·φ(x, m))``; see :mod:`jaxstyle.chess.players`.
"""

from __future__ import annotations

from jaxstyle.chess.generation import GenerationReport, generate, is_complete, schedule_games
from jaxstyle.chess.play import PlayedGame, game_pgn, move_logits, play_game, repertoire_move
from jaxstyle.chess.players import (
    ARCHETYPES,
    GeneratorConfig,
    PlayerStyle,
    elo_from_tau,
    load_ground_truth,
    make_players,
    write_ground_truth,
)

__all__ = [
    "ARCHETYPES",
    "GenerationReport",
    "GeneratorConfig",
    "PlayedGame",
    "PlayerStyle",
    "elo_from_tau",
    "game_pgn",
    "generate",
    "is_complete",
    "load_ground_truth",
    "make_players",
    "move_logits",
    "play_game",
    "repertoire_move",
    "schedule_games",
    "write_ground_truth",
]
