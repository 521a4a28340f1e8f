"""Move-loss Δ for synthetic players: a fast built-in evaluator, optionally Stockfish.

``Δ(m) = max_m' v(m') − v(m) ≥ 0`` in pawns, where ``v`` scores each legal move from the
mover's point of view. The built-in ``v`` is a one-ply static exchange heuristic:

* **gain** — material captured (en passant and promotions included) plus the change of the
  moving piece's piece-square value (castling also moves the rook);
* **risk** — what the opponent can take back next move: the moved piece if its new square
  is attacked (all of it when undefended, else its value minus the cheapest attacker's),
  or the largest such threat on another of our pieces that the move leaves standing;
* a mate-in-one scores ``MATE`` pawns.

It is a caricature of chess strength, but it is monotone in the right direction
(hanging a queen costs about 9, a quiet developing move about 0.1) and it costs a few
µs per move, so a core plays several games per second in pure Python.

:class:`MoveTable` holds what the evaluator and the style features both need from a
position (legal moves, moving and captured piece types, checks) so it is computed once.
"""

from __future__ import annotations

import dataclasses
import shutil

import chess
import chess.engine
import numpy as np

PIECE_VALUES = np.array([0.0, 1.0, 3.2, 3.3, 5.0, 9.0, 0.0], dtype=np.float32)
"""Pawns per piece type, indexed by ``chess.PAWN`` (1) … ``chess.KING`` (6); index 0 unused."""

MATE = 1000.0
"""Value (pawns) of a move that mates."""


def _piece_square_tables() -> np.ndarray:
    """``float32 [2, 7, 64]``: (middlegame, endgame) × piece type × square, White's view, pawns."""
    files = np.arange(64) % 8
    ranks = np.arange(64) // 8
    center = np.maximum(np.abs(files - 3.5), np.abs(ranks - 3.5))  # 0.5 (centre) … 3.5
    centrality = (3.5 - center) / 3.0  # 0 at the rim … 1 in the centre
    pst = np.zeros((2, 7, 64), dtype=np.float32)
    pawn = 0.05 * np.clip(ranks - 1, 0, 6) + 0.1 * ((files == 3) | (files == 4)) * (ranks >= 3)
    pst[:, chess.PAWN] = pawn
    pst[1, chess.PAWN] = 0.12 * np.clip(ranks - 1, 0, 6)
    pst[:, chess.KNIGHT] = 0.4 * centrality - 0.2
    pst[:, chess.BISHOP] = 0.2 * centrality - 0.05 * (ranks == 0)
    pst[:, chess.ROOK] = 0.15 * (ranks == 6) + 0.05 * ((files == 3) | (files == 4))
    pst[:, chess.QUEEN] = 0.1 * centrality
    castled = np.isin(np.arange(64), [chess.G1, chess.H1, chess.B1, chess.C1]).astype(np.float32)
    pst[0, chess.KING] = 0.3 * castled - 0.25 * ranks
    pst[1, chess.KING] = 0.4 * centrality
    return pst


PIECE_SQUARE = _piece_square_tables()


@dataclasses.dataclass
class MoveTable:
    """Legal moves of a position with the facts every consumer needs. Arrays are ``[n]``.

    Attributes:
      board: the position (not copied; do not mutate while the table is in use).
      moves: legal moves, python-chess generation order.
      piece: moving piece type (1 = pawn … 6 = king), ``int8``.
      captured: captured piece type, 0 for none (en passant counts as pawn), ``int8``.
      promotion: promotion piece type, 0 for none, ``int8``.
      gives_check: whether the move checks, ``bool``.
      castling: whether the move castles, ``bool``.
    """

    board: chess.Board
    moves: list[chess.Move]
    piece: np.ndarray
    captured: np.ndarray
    promotion: np.ndarray
    gives_check: np.ndarray
    castling: np.ndarray

    def __len__(self) -> int:
        return len(self.moves)


def analyse_moves(board: chess.Board) -> MoveTable:
    """Builds the :class:`MoveTable` of ``board`` (one legal-move generation)."""
    moves = list(board.generate_legal_moves())
    piece_at = board.piece_type_at
    piece = [piece_at(m.from_square) for m in moves]
    captured = []
    for m in moves:
        taken = piece_at(m.to_square)
        if taken is None and board.is_en_passant(m):
            taken = chess.PAWN
        captured.append(taken or 0)
    return MoveTable(
        board=board,
        moves=moves,
        piece=np.array(piece, dtype=np.int8),
        captured=np.array(captured, dtype=np.int8),
        promotion=np.array([m.promotion or 0 for m in moves], dtype=np.int8),
        gives_check=np.array([board.gives_check(m) for m in moves], dtype=bool),
        castling=np.array([board.is_castling(m) for m in moves], dtype=bool),
    )


def _cheapest(board: chess.Board, mask: int) -> float:
    """Value of the cheapest piece in ``mask`` (0 when only a king is in it)."""
    for piece_type, bitboard in enumerate(
        (board.pawns, board.knights, board.bishops, board.rooks, board.queens), start=1
    ):
        if mask & bitboard:
            return float(PIECE_VALUES[piece_type])
    return 0.0


def _endgame(board: chess.Board) -> bool:
    heavy = (
        3.2 * chess.popcount(board.knights)
        + 3.3 * chess.popcount(board.bishops)
        + 5 * chess.popcount(board.rooks)
        + 9 * chess.popcount(board.queens)
    )
    return heavy <= 14


class FastEvaluator:
    """The built-in one-ply evaluator (see the module docstring). Stateless; cheap to copy."""

    name = "fast"

    def move_values(self, table: MoveTable) -> np.ndarray:
        """``float32 [n]``: value of each legal move for the mover, in pawns."""
        board = table.board
        us = board.turn
        them = not us
        flip = 0 if us == chess.WHITE else 56
        pst = PIECE_SQUARE[1 if _endgame(board) else 0]
        occupied = board.occupied

        threats = []  # (threat value, square, attackers mask) of our pieces
        for square in chess.scan_forward(board.occupied_co[us] & ~board.kings):
            attackers = board.attackers_mask(them, square)
            if not attackers:
                continue
            value = float(PIECE_VALUES[board.piece_type_at(square)])
            if board.attackers_mask(us, square):
                value = max(0.0, value - _cheapest(board, attackers))
            if value > 0:
                threats.append((value, square, attackers))
        threats.sort(reverse=True)

        values = np.empty(len(table), dtype=np.float32)
        for i, move in enumerate(table.moves):
            f, t = move.from_square, move.to_square
            piece = int(table.piece[i])
            promo = int(table.promotion[i])
            gain = float(PIECE_VALUES[table.captured[i]])
            landed = promo or piece
            gain += float(pst[landed, t ^ flip] - pst[piece, f ^ flip])
            if promo:
                gain += float(PIECE_VALUES[promo] - PIECE_VALUES[chess.PAWN])
            if table.castling[i]:
                rook_from, rook_to = (7, 5) if chess.square_file(t) == 6 else (0, 3)
                gain += float(pst[chess.ROOK, rook_to] - pst[chess.ROOK, rook_from])
            risk = 0.0
            if piece != chess.KING:
                after = occupied & ~chess.BB_SQUARES[f]
                attackers = board.attackers_mask(them, t, after)
                if attackers:
                    mine = float(PIECE_VALUES[landed])
                    if board.attackers_mask(us, t, after) & ~chess.BB_SQUARES[f]:
                        mine = max(0.0, mine - _cheapest(board, attackers))
                    risk = mine
            for value, square, attackers in threats:
                if value <= risk:
                    break
                if square != f and attackers & ~chess.BB_SQUARES[t]:
                    risk = value
                    break
            values[i] = gain - risk
            if table.gives_check[i]:
                board.push(move)
                if board.is_checkmate():
                    values[i] = MATE
                board.pop()
        return values

    def deltas(self, table: MoveTable) -> np.ndarray:
        """``float32 [n]``: Δ(m) ≥ 0 in pawns; 0 for the best move(s)."""
        values = self.move_values(table)
        return values.max() - values if len(values) else values


class StockfishEvaluator:
    """Δ from a UCI engine (Stockfish) via python-chess: multipv search at a fixed depth.

    ``command`` is the engine executable (default: ``stockfish`` on PATH) or an argv list.
    Moves outside the engine's ``multipv`` lines get the worst reported score. Scores are
    centipawns from the mover's side, converted to pawns; mates count as ``MATE`` pawns.
    Use as a context manager, or call :meth:`close`.
    """

    name = "stockfish"

    def __init__(self, command: str | list[str] | None = None, depth: int = 6, multipv: int = 64):
        command = command or shutil.which("stockfish")
        if command is None:
            raise FileNotFoundError("no 'stockfish' binary on PATH; use FastEvaluator")
        self.command = command
        self.depth = depth
        self.multipv = multipv
        self._engine = chess.engine.SimpleEngine.popen_uci(command)

    def deltas(self, table: MoveTable) -> np.ndarray:
        board = table.board
        infos = self._engine.analyse(
            board,
            chess.engine.Limit(depth=self.depth),
            multipv=min(self.multipv, len(table)),
        )
        scores = {}
        for info in infos:
            if "pv" in info and info["pv"]:
                score = info["score"].pov(board.turn).score(mate_score=int(MATE * 100))
                scores[info["pv"][0]] = score / 100.0
        worst = min(scores.values()) if scores else 0.0
        values = np.array([scores.get(m, worst) for m in table.moves], dtype=np.float32)
        return values.max() - values if len(values) else values

    def close(self) -> None:
        self._engine.quit()

    def __enter__(self) -> StockfishEvaluator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
