"""The move-loss evaluators and the readable style features."""

from __future__ import annotations

import chess
import numpy as np
import pytest

from jaxstyle.chess.evaluator import MATE, FastEvaluator, StockfishEvaluator, analyse_moves
from jaxstyle.chess.style_features import FEATURES, feature_index, move_features, theta_from_dict
from tests.jaxstyle.samples import FAKE_ENGINE


def deltas_by_san(fen: str) -> dict[str, float]:
    board = chess.Board(fen)
    table = analyse_moves(board)
    return {board.san(m): float(d) for m, d in zip(table.moves, FastEvaluator().deltas(table))}


def test_mate_in_one_is_the_best_move_and_hanging_the_queen_costs_about_nine():
    deltas = deltas_by_san("r1bqkbnr/pppp1ppp/2n5/4p3/2B1P3/5Q2/PPPP1PPP/RNB1K1NR w KQkq - 2 3")
    assert deltas["Qxf7#"] == 0.0
    assert MATE - 1 < min(d for s, d in deltas.items() if s != "Qxf7#") < MATE
    rest = {s: d - (MATE - deltas["Nc3"]) for s, d in deltas.items() if s != "Qxf7#"}
    assert rest["Qf4"] - rest["Nc3"] == pytest.approx(9.0, abs=0.5)  # exf4 wins the queen


def test_taking_a_free_piece_beats_quiet_moves_and_a_defended_pawn_grab_costs_material():
    # the e5 knight is undefended and attacked by the f3 knight
    deltas = deltas_by_san("rnbqkb1r/pppp1ppp/8/4n3/8/5N2/PPPPPPPP/RNBQKB1R w KQkq - 0 1")
    assert deltas["Nxe5"] == 0.0
    assert all(d > 2.5 for s, d in deltas.items() if s != "Nxe5")
    # Qxd7+ takes a pawn defended by the king/bishop/knight/queen: loses the queen
    deltas = deltas_by_san("rnbqkbnr/pppppppp/8/8/3Q4/8/PPPPPPPP/RNB1KBNR w KQkq - 0 1")
    assert deltas["Qxd7+"] > 7.0


def test_moving_an_attacked_piece_away_removes_the_threat():
    # the white bishop on b5 is attacked by the a6 pawn and undefended
    deltas = deltas_by_san("rnbqkbnr/1ppppppp/p7/1B6/4P3/8/PPPP1PPP/RNBQK1NR w KQkq - 0 3")
    assert deltas["Ba4"] < 1.0 and deltas["Nf3"] > 2.5


def test_uci_engine_evaluator_turns_multipv_scores_into_deltas():
    board = chess.Board("4k3/8/8/3p4/4P3/8/8/4K3 w - - 0 1")
    table = analyse_moves(board)
    with StockfishEvaluator(FAKE_ENGINE, depth=1) as engine:
        deltas = dict(zip((m.uci() for m in table.moves), engine.deltas(table)))
    assert deltas["e4d5"] == 0.0
    assert all(d == pytest.approx(3.0) for uci, d in deltas.items() if uci != "e4d5")


def test_missing_stockfish_binary_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(FileNotFoundError, match="no 'stockfish' binary"):
        StockfishEvaluator()


def features_by_san(fen: str, book: str | None = None) -> dict[str, set[str]]:
    board = chess.Board(fen)
    table = analyse_moves(board)
    book_move = board.parse_san(book) if book else None
    phi = move_features(table, book_move)
    assert phi.shape == (len(table), len(FEATURES)) and phi.dtype == np.float32
    return {
        board.san(m): {name for name, on in zip(FEATURES, row) if on}
        for m, row in zip(table.moves, phi)
    }


def test_features_name_what_the_move_does():
    fen = "r3k2r/ppp2ppp/2n5/3qp3/1b1P4/2N1BN2/PPPQ1PPP/R3KB1R w KQkq - 0 8"
    feats = features_by_san(fen, book="a3")
    assert feats["O-O-O"] == {"castle_early"}
    assert feats["Nxd5"] == {"capture", "knight_move", "advance"}
    assert feats["Nxe5"] == {"capture", "knight_move", "advance"}
    assert feats["Ke2"] == {"king_move"}
    assert feats["a3"] == {"pawn_push", "book"}
    assert feats["dxe5"] == {"capture", "pawn_storm"}  # pawn to rank 5 next to the e8 king
    assert feats["Qe2"] == {"queen_move"}
    assert feats["Bg5"] == {"bishop_move", "advance"}
    assert feats["Rb1"] == {"rook_move"}


def test_queen_trade_check_pawn_storm_late_castling_and_bishop_for_knight():
    fen = "r3k2r/ppp2ppp/2n5/1B1q4/8/5N2/PPPQ1PPP/R3K2R w KQkq - 0 15"
    feats = features_by_san(fen)
    assert "castle_late" in feats["O-O"]
    assert {"bishop_for_knight", "capture", "check"} <= feats["Bxc6+"]
    assert "queen_trade" in feats["Qd4"]  # steps onto a square the black queen attacks
    board = chess.Board("r3k2r/ppp2ppp/8/3q4/8/8/PPP2PPP/R2QK2R w KQkq - 0 15")
    table = analyse_moves(board)
    phi = move_features(table)
    take = [i for i, m in enumerate(table.moves) if board.san(m) == "Qxd5"][0]
    assert phi[take, feature_index("queen_trade")] == 1
    storm = features_by_san("6k1/5ppp/8/8/8/6P1/5P1P/6K1 w - - 0 30")
    assert "pawn_storm" in storm["g4"] and "pawn_storm" not in storm["f3"]
    assert "pawn_storm" in storm["h4"]


def test_theta_from_dict_rejects_unknown_feature_names():
    assert theta_from_dict({"capture": 2.0})[feature_index("capture")] == 2.0
    with pytest.raises(ValueError, match="unknown style features"):
        theta_from_dict({"sacrifice": 1.0})
