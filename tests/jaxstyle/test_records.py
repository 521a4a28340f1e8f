"""The vectorised encoder writes, per position, what the per-position reference encodes."""

from __future__ import annotations

import random

import chess
import numpy as np
import pytest

from jaxstyle.chess import encoding, records


def playout_games(seed: int, games: int, max_plies: int = 200) -> list[list[chess.Move]]:
    """Random playouts (checks, pins, promotions, castling, en passant appear)."""
    rng = random.Random(seed)
    out = []
    for _ in range(games):
        board, moves = chess.Board(), []
        while not board.is_game_over() and board.ply() < max_plies:
            move = rng.choice(list(board.legal_moves))
            moves.append(move)
            board.push(move)
        out.append(moves)
    return out


def recorded(moves: list[chess.Move], fen: str, clean_castling: bool):
    """Every position of a game through :class:`records.PositionRecorder`, and the boards."""
    recorder = records.PositionRecorder(frozenset({chess.WHITE, chess.BLACK}), clean_castling)
    board, boards = chess.Board(fen), []
    for ply, move in enumerate(moves):
        recorder.record(board, move, ply)
        boards.append(board.copy(stack=False))
        board.push(move)
    return recorder.positions, boards


@pytest.mark.parametrize("clean_castling", [False, True], ids=["movegen", "python-chess"])
def test_encoded_positions_match_the_reference_encoder(clean_castling):
    playouts = playout_games(3, 6)
    games = [recorded(m, chess.STARTING_FEN, clean_castling) for m in playouts]
    enc = records.encode_positions(records.concat_positions([p for p, _ in games]))
    boards = [b for _, game_boards in games for b in game_boards]
    moves = [move for game in playouts for move in game]
    assert len(boards) == len(enc.ply) > 500
    for i, (board, move) in enumerate(zip(boards, moves)):
        np.testing.assert_array_equal(enc.planes[i], encoding.encode_board(board))
        legal = enc.legal[enc.offsets[i] : enc.offsets[i + 1]]
        np.testing.assert_array_equal(legal, encoding.legal_move_indices(board), board.fen())
        assert enc.move[i] == encoding.move_to_index(board, move)
        assert bool(enc.color[i]) == board.turn


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16383, 16384])
def test_cached_entry_head_plus_payload_is_the_int64_entry(size):
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert records._entry_head("legal", size) + payload == records.int64_entry("legal", payload)
