"""How a synthetic player moves: repertoire, move logits, one game, PGN text.

``P(m | x, p) ∝ exp(−Δ(x, m)/τ_p + θ_p·φ(x, m))`` (see :mod:`jaxstyle.chess.players`),
sampled with the Gumbel-max trick; in the first ``opening_plies`` half-moves the
``book`` feature marks the player's own deterministic repertoire move.
"""

from __future__ import annotations

import dataclasses
import hashlib

import chess
import numpy as np

from jaxstyle.chess.evaluator import PIECE_VALUES, FastEvaluator, MoveTable, analyse_moves
from jaxstyle.chess.pgn import time_control_class
from jaxstyle.chess.players import GeneratorConfig, PlayerStyle
from jaxstyle.chess.style_features import move_features


def repertoire_move(
    player: PlayerStyle, table: MoveTable, deltas: np.ndarray, tolerance: float
) -> chess.Move | None:
    """The player's own opening choice in this position: among moves with Δ ≤ ``tolerance``,
    the one with the smallest hash of (repertoire seed, position, move). Deterministic."""
    if not len(table):
        return None
    fen = table.board.fen()
    best, best_hash = None, None
    for move, delta in zip(table.moves, deltas):
        if delta > tolerance:
            continue
        digest = hashlib.blake2b(
            f"{player.repertoire_seed}|{fen}|{move.uci()}".encode(), digest_size=8
        ).digest()
        if best_hash is None or digest < best_hash:
            best, best_hash = move, digest
    return best


def move_logits(
    player: PlayerStyle, table: MoveTable, deltas: np.ndarray, phi: np.ndarray
) -> np.ndarray:
    """``float32 [n]``: −Δ/τ_p + θ_p·φ, the unnormalised log-probabilities of the legal moves."""
    return -deltas / player.tau + phi @ np.asarray(player.theta, dtype=np.float32)


@dataclasses.dataclass
class PlayedGame:
    """A finished game: SAN and UCI moves, result (``1-0`` …) and how it ended."""

    san: list[str]
    uci: list[str]
    result: str
    termination: str


def _material(board: chess.Board, color: chess.Color) -> float:
    return float(
        sum(PIECE_VALUES[pt] * chess.popcount(board.pieces_mask(pt, color)) for pt in range(1, 6))
    )


def play_game(
    white: PlayerStyle,
    black: PlayerStyle,
    rng: np.random.Generator,
    config: GeneratorConfig,
    evaluator=None,
) -> PlayedGame:
    """Plays one game between two synthetic players (sampling with the Gumbel-max trick)."""
    evaluator = evaluator or FastEvaluator()
    board = chess.Board()
    san: list[str] = []
    uci: list[str] = []
    while True:
        table = analyse_moves(board)
        if not len(table):
            if board.is_check():
                return PlayedGame(san, uci, "0-1" if board.turn else "1-0", "Normal")
            return PlayedGame(san, uci, "1/2-1/2", "Normal")
        if (
            board.is_insufficient_material()
            or board.halfmove_clock >= 100
            or (board.halfmove_clock >= 8 and board.is_repetition(3))
        ):
            return PlayedGame(san, uci, "1/2-1/2", "Normal")
        if len(uci) >= config.max_plies:
            balance = _material(board, chess.WHITE) - _material(board, chess.BLACK)
            result = "1-0" if balance >= 3 else "0-1" if balance <= -3 else "1/2-1/2"
            return PlayedGame(san, uci, result, "Adjudication")
        player = white if board.turn == chess.WHITE else black
        deltas = evaluator.deltas(table)
        book = None
        if len(uci) < config.opening_plies:
            book = repertoire_move(player, table, deltas, config.book_tolerance)
        phi = move_features(table, book)
        logits = move_logits(player, table, deltas, phi)
        choice = int(np.argmax(logits + rng.gumbel(size=len(logits))))
        move = table.moves[choice]
        san.append(board.san(move))
        uci.append(move.uci())
        board.push(move)


def game_pgn(
    game_id: str,
    white: PlayerStyle,
    black: PlayerStyle,
    played: PlayedGame,
    time_control: str,
) -> str:
    """One game as PGN text (Lichess-like headers, movetext wrapped at 80 columns)."""
    headers = [
        ("Event", f"Rated {time_control_class(time_control).capitalize()} game"),
        ("Site", "synthetic"),
        ("Date", "2026.01.01"),
        ("Round", "-"),
        ("White", white.name),
        ("Black", black.name),
        ("Result", played.result),
        ("WhiteElo", str(white.elo)),
        ("BlackElo", str(black.elo)),
        ("TimeControl", time_control),
        ("Termination", played.termination),
        ("GameId", game_id),
    ]
    tokens = []
    for ply, move in enumerate(played.san):
        if ply % 2 == 0:
            tokens.append(f"{ply // 2 + 1}.")
        tokens.append(move)
    tokens.append(played.result)
    lines, line = [], ""
    for token in tokens:
        if line and len(line) + 1 + len(token) > 80:
            lines.append(line)
            line = token
        else:
            line = f"{line} {token}" if line else token
    lines.append(line)
    head = "\n".join(f'[{k} "{v}"]' for k, v in headers)
    return f"{head}\n\n" + "\n".join(lines) + "\n\n"
