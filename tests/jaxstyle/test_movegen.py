"""The vectorised legal-move generator gives python-chess' legal moves, position by position."""

from __future__ import annotations

import random

import chess
import numpy as np

from jaxstyle.chess import encoding, movegen, records


def playout_positions(seed: int, games: int, max_plies: int = 250) -> list[chess.Board]:
    """Random playouts: they reach checks, pins, promotions, castling and en passant."""
    rng = random.Random(seed)
    boards = []
    for _ in range(games):
        board = chess.Board()
        while not board.is_game_over() and board.ply() < max_plies:
            boards.append(board.copy(stack=False))
            board.push(rng.choice(list(board.legal_moves)))
    return boards


def generated(boards: list[chess.Board]) -> list[np.ndarray]:
    planes = np.stack([encoding.encode_board(b) for b in boards]).view("<u8").reshape(-1, 18)
    rows, keys = movegen.legal_keys(planes)
    index = records._KEY_TO_INDEX[keys]
    assert (index >= 0).all()
    return [np.sort(index[rows == i]) for i in range(len(boards))]


def test_legal_moves_match_python_chess_on_random_playouts():
    boards = playout_positions(seed=7, games=12)
    kinds = {"castling": 0, "en_passant": 0, "promotion": 0, "check": 0}
    for board, mine in zip(boards, generated(boards)):
        np.testing.assert_array_equal(mine, encoding.legal_move_indices(board), board.fen())
        moves = list(board.legal_moves)
        kinds["castling"] += any(board.is_castling(m) for m in moves)
        kinds["en_passant"] += any(board.is_en_passant(m) for m in moves)
        kinds["promotion"] += any(m.promotion for m in moves)
        kinds["check"] += board.is_check()
    assert min(kinds.values()) > 0, kinds  # every special case was exercised


def test_pins_discovered_checks_and_en_passant_along_the_rank():
    fens = [
        "8/8/8/KPp4r/8/8/8/7k w - c6 0 2",  # e.p. would expose the king on the rank
        "4k3/8/8/8/4r3/8/4N3/4K3 w - - 0 1",  # pinned knight
        "4k3/8/8/8/1b6/8/3P4/4K3 w - - 0 1",  # pinned pawn
        "r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1",  # both castlings
        "r3k2r/8/8/8/8/5b2/8/R3K2R w KQkq - 0 1",  # castling through an attacked square
        "4k3/1P6/8/8/8/8/8/4K3 w - - 0 1",  # promotions
        "4k3/8/8/8/8/8/3q4/4K3 w - - 0 1",  # in check: only king moves and captures
    ]
    boards = [chess.Board(f) for f in fens]
    boards += [b.mirror() for b in boards]  # the same from Black's side
    for board, mine in zip(boards, generated(boards)):
        np.testing.assert_array_equal(mine, encoding.legal_move_indices(board), board.fen())


def test_slider_attacks_match_python_chess_on_random_occupancies():
    rng = np.random.default_rng(0)
    squares = rng.integers(64, size=2000)
    occupied = rng.integers(0, 2**63, size=2000, dtype=np.uint64) & rng.integers(
        0, 2**63, size=2000, dtype=np.uint64
    )  # about a quarter of the squares
    bishop = movegen.bishop_attacks(squares, occupied)
    rook = movegen.rook_attacks(squares, occupied)
    for s, occ, b, r in zip(squares.tolist(), occupied.tolist(), bishop.tolist(), rook.tolist()):
        diagonal = chess.BB_DIAG_ATTACKS[s][chess.BB_DIAG_MASKS[s] & occ]
        straight = chess.BB_RANK_ATTACKS[s][chess.BB_RANK_MASKS[s] & occ]
        straight |= chess.BB_FILE_ATTACKS[s][chess.BB_FILE_MASKS[s] & occ]
        assert (b, r) == (diagonal, straight), (s, occ)
