"""Readable per-move style features φ(x, m) ∈ {0, 1}^F.

A synthetic player's preference is ``θ_p · φ(x, m)``; the same features measured on
games (e.g. the capture rate) tell whether a learned style vector or a steering delta
changed behaviour. All features are from the mover's point of view ("relative rank" 0 is
the mover's back rank).

===================== ===============================================================
capture               the move captures (en passant included)
check                 the move gives check
castle_early          castling up to move 10
castle_late           castling after move 10
king_move             a king move that is not castling
pawn_push             a pawn move that does not capture
pawn_storm            a pawn move to relative rank ≥ 4 (0-based 3) within one file of the
                      opponent's king
knight_move … queen_move   which piece type moves
queen_trade           our queen takes their queen, or steps onto a square their queen attacks
bishop_for_knight     a bishop captures a knight (gives up the bishop pair's edge)
advance / retreat     a knight, bishop, rook or queen moves to a higher / lower relative rank
book                  the move is the player's own repertoire move here (opening only)
===================== ===============================================================
"""

from __future__ import annotations

import chess
import numpy as np

from jaxstyle.chess.evaluator import MoveTable

FEATURES = (
    "capture",
    "check",
    "castle_early",
    "castle_late",
    "king_move",
    "pawn_push",
    "pawn_storm",
    "knight_move",
    "bishop_move",
    "rook_move",
    "queen_move",
    "queen_trade",
    "bishop_for_knight",
    "advance",
    "retreat",
    "book",
)
"""Feature names, in column order of :func:`move_features`."""

NUM_FEATURES = len(FEATURES)
_COL = {name: i for i, name in enumerate(FEATURES)}
EARLY_CASTLING_MOVES = 10


def move_features(table: MoveTable, book_move: chess.Move | None = None) -> np.ndarray:
    """``float32 [n_moves, NUM_FEATURES]`` 0/1 features of every legal move in ``table``."""
    board = table.board
    n = len(table)
    phi = np.zeros((n, NUM_FEATURES), dtype=np.float32)
    if n == 0:
        return phi
    us = board.turn
    piece = table.piece
    capture = table.captured > 0
    castling = table.castling
    phi[:, _COL["capture"]] = capture
    phi[:, _COL["check"]] = table.gives_check
    early = board.fullmove_number <= EARLY_CASTLING_MOVES
    phi[:, _COL["castle_early"]] = castling & early
    phi[:, _COL["castle_late"]] = castling & (not early)
    phi[:, _COL["king_move"]] = (piece == chess.KING) & ~castling
    pawn = piece == chess.PAWN
    phi[:, _COL["pawn_push"]] = pawn & ~capture
    for name, piece_type in (
        ("knight_move", chess.KNIGHT),
        ("bishop_move", chess.BISHOP),
        ("rook_move", chess.ROOK),
        ("queen_move", chess.QUEEN),
    ):
        phi[:, _COL[name]] = piece == piece_type
    phi[:, _COL["bishop_for_knight"]] = (piece == chess.BISHOP) & (table.captured == chess.KNIGHT)

    from_sq = np.fromiter((m.from_square for m in table.moves), dtype=np.int64, count=n)
    to_sq = np.fromiter((m.to_square for m in table.moves), dtype=np.int64, count=n)
    flip = 0 if us == chess.WHITE else 56
    from_rank = (from_sq ^ flip) // 8
    to_rank = (to_sq ^ flip) // 8
    officer = (piece >= chess.KNIGHT) & (piece <= chess.QUEEN)
    phi[:, _COL["advance"]] = officer & (to_rank > from_rank)
    phi[:, _COL["retreat"]] = officer & (to_rank < from_rank)

    their_king = board.king(not us)
    if their_king is not None:
        near_king = np.abs(to_sq % 8 - chess.square_file(their_king)) <= 1
        phi[:, _COL["pawn_storm"]] = pawn & near_king & (to_rank >= 3)

    their_queens = board.pieces_mask(chess.QUEEN, not us)
    if their_queens:
        queen_attacks = 0
        for square in chess.scan_forward(their_queens):
            queen_attacks |= board.attacks_mask(square)
        queen = piece == chess.QUEEN
        takes_queen = table.captured == chess.QUEEN
        onto_attacked = np.array([bool(queen_attacks & chess.BB_SQUARES[t]) for t in to_sq])
        phi[:, _COL["queen_trade"]] = queen & (takes_queen | onto_attacked)

    if book_move is not None:
        for i, move in enumerate(table.moves):
            if move == book_move:
                phi[i, _COL["book"]] = 1.0
                break
    return phi


def theta_from_dict(weights: dict[str, float]) -> np.ndarray:
    """``float32 [NUM_FEATURES]`` from ``{feature name: weight}`` (missing names are 0)."""
    unknown = set(weights) - set(FEATURES)
    if unknown:
        raise ValueError(f"unknown style features {sorted(unknown)}; known: {FEATURES}")
    theta = np.zeros(NUM_FEATURES, dtype=np.float32)
    for name, value in weights.items():
        theta[_COL[name]] = value
    return theta


def feature_index(name: str) -> int:
    """Column of feature ``name`` in :data:`FEATURES`."""
    return _COL[name]
