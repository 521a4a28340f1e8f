"""Board → input planes, move vocabulary and legal-move mask (Maia-2 layout).

Layout choice: **Maia-2** (18 planes, 1880 moves), not Maia-1 (112 planes, 1858 moves).

* A position is encoded on its own, without the 8-position history of lc0/Maia-1. Every
  example in the dataset is then independent (random access into array_record needs no
  neighbouring records), and a packed position is only ``18 × 8`` bytes.
* The board is mirrored so the side to move is always White (Maia-2 convention). The
  vocabulary is then one list of UCI strings in White's frame, and the bijection with
  ``chess.Move`` for Black is a vertical mirror of both squares (``square ^ 56``).
* Maia-2's vocabulary lists queen promotions explicitly (``a7a8q``) next to the plain
  queen-line move (``a7a8``, e.g. a rook), so ``chess.Move.promotion`` maps one-to-one;
  lc0's 1858 folds queen promotions into the plain move and needs the piece to decode.

Planes (all from the side to move's point of view, after mirroring; plane ``[c, r, f]``
is rank ``r`` (0 = own back rank), file ``f`` (0 = a-file)):

====== =====================================================================
0–5    own pawn, knight, bishop, rook, queen, king
6–11   opponent pawn, knight, bishop, rook, queen, king
12     side to move: all ones (after mirroring the mover is always "White")
13–16  castling rights: own king side, own queen side, opp king side, opp queen side
17     en-passant target square, set whenever the last move was a double pawn push
       (``board.ep_square``, as Maia-2 does), whether or not a capture there is legal
====== =====================================================================

Storage form: *packed planes* ``uint8 [18, 8]``; byte ``[c, r]`` holds rank ``r`` of plane
``c``, bit ``f`` = file ``f`` (``np.unpackbits(..., bitorder="little")`` inverts it). This is
exactly the little-endian byte view of the 18 bitboards. Legal moves are stored as a
variable-length ``int16`` vector of vocabulary indices (about 35 entries on average)
rather than a 1880-wide mask.

Vocabulary order (Maia-2's ``get_all_possible_moves``): for every square a1, b1, …, h8,
the moves of a lone white queen and then of a lone white knight in python-chess's move
generation order (1792 entries), followed by the 88 white promotions (file a…h; straight,
capture left, capture right; pieces q, r, b, n).
"""

from __future__ import annotations

import chess
import numpy as np

NUM_PLANES = 18
"""Number of input planes per position."""

VOCAB_SIZE = 1880
"""Number of entries in the move vocabulary."""

_PROMO_PIECES = "qrbn"
_PROMO_CODE = {None: 0, chess.QUEEN: 5, chess.ROOK: 4, chess.BISHOP: 3, chess.KNIGHT: 2}


def _build_vocabulary() -> tuple[str, ...]:
    moves: list[str] = []
    for square in chess.SQUARES:
        for piece_type in (chess.QUEEN, chess.KNIGHT):
            board = chess.Board(None)
            board.set_piece_at(square, chess.Piece(piece_type, chess.WHITE))
            moves.extend(move.uci() for move in board.legal_moves)
    for file_index, file_name in enumerate(chess.FILE_NAMES):
        targets = [file_name]
        if file_index > 0:
            targets.append(chess.FILE_NAMES[file_index - 1])
        if file_index < 7:
            targets.append(chess.FILE_NAMES[file_index + 1])
        for target in targets:
            moves.extend(f"{file_name}7{target}8{piece}" for piece in _PROMO_PIECES)
    return tuple(moves)


MOVE_VOCAB: tuple[str, ...] = _build_vocabulary()
"""The 1880 moves as UCI strings in White's frame (side to move mirrored to White)."""


def _key(from_square: int, to_square: int, promotion: int | None) -> int:
    return (from_square * 64 + to_square) * 6 + _PROMO_CODE[promotion]


def _build_lookup() -> tuple[list[int], tuple[chess.Move, ...]]:
    lookup = [-1] * (64 * 64 * 6)
    white_moves = []
    for index, uci in enumerate(MOVE_VOCAB):
        move = chess.Move.from_uci(uci)
        lookup[_key(move.from_square, move.to_square, move.promotion)] = index
        white_moves.append(move)
    return lookup, tuple(white_moves)


_LOOKUP, _WHITE_MOVES = _build_lookup()
_BLACK_MOVES = tuple(
    chess.Move(chess.square_mirror(m.from_square), chess.square_mirror(m.to_square), m.promotion)
    for m in _WHITE_MOVES
)
_ALL_ONES = (1 << 64) - 1


def move_to_index(board: chess.Board, move: chess.Move) -> int:
    """Vocabulary index of ``move`` for the side to move of ``board``.

    Raises:
      ValueError: for null moves, drops and moves outside the vocabulary (e.g. a
        promotion from the wrong rank); every legal standard-chess move is inside.
    """
    if not move or move.drop is not None:
        raise ValueError(f"move {move.uci()} has no vocabulary index")
    flip = 0 if board.turn == chess.WHITE else 56
    promotion = move.promotion
    if promotion not in _PROMO_CODE:
        raise ValueError(f"move {move.uci()} has no vocabulary index")
    index = _LOOKUP[_key(move.from_square ^ flip, move.to_square ^ flip, promotion)]
    if index < 0:
        raise ValueError(f"move {move.uci()} has no vocabulary index")
    return index


def index_to_move(board: chess.Board, index: int) -> chess.Move:
    """The ``chess.Move`` that vocabulary entry ``index`` denotes for ``board``'s side to move.

    Inverse of :func:`move_to_index`. The move need not be legal in ``board``.
    """
    if not 0 <= index < VOCAB_SIZE:
        raise ValueError(f"vocabulary index {index} outside [0, {VOCAB_SIZE})")
    return (_WHITE_MOVES if board.turn == chess.WHITE else _BLACK_MOVES)[index]


def legal_move_indices(board: chess.Board) -> np.ndarray:
    """Sorted vocabulary indices of all legal moves: ``int16 [n_legal]``."""
    flip = 0 if board.turn == chess.WHITE else 56
    lookup = _LOOKUP
    codes = _PROMO_CODE
    indices = [
        lookup[((m.from_square ^ flip) * 64 + (m.to_square ^ flip)) * 6 + codes[m.promotion]]
        for m in board.generate_legal_moves()
    ]
    result = np.array(indices, dtype=np.int16)
    result.sort()
    return result


def indices_to_mask(indices: np.ndarray) -> np.ndarray:
    """Legal-move mask ``bool [VOCAB_SIZE]`` from vocabulary indices ``[n]``."""
    mask = np.zeros(VOCAB_SIZE, dtype=bool)
    mask[np.asarray(indices, dtype=np.int64)] = True
    return mask


def ragged_to_mask(indices: list[np.ndarray] | tuple[np.ndarray, ...]) -> np.ndarray:
    """Batch of legal-move index vectors → mask ``bool [batch, VOCAB_SIZE]``."""
    lengths = np.fromiter((len(i) for i in indices), dtype=np.int64, count=len(indices))
    mask = np.zeros((len(indices), VOCAB_SIZE), dtype=bool)
    if lengths.sum():
        rows = np.repeat(np.arange(len(indices)), lengths)
        cols = np.concatenate([np.asarray(i, dtype=np.int64) for i in indices])
        mask[rows, cols] = True
    return mask


def legal_mask(board: chess.Board) -> np.ndarray:
    """Legal-move mask ``bool [VOCAB_SIZE]`` for the side to move."""
    return indices_to_mask(legal_move_indices(board))


def encode_board(board: chess.Board) -> np.ndarray:
    """Packed planes ``uint8 [NUM_PLANES, 8]`` of ``board`` (see the module docstring).

    Only standard chess: pockets of variants and move history are not encoded.
    """
    us = board.turn
    own = board.occupied_co[us]
    opp = board.occupied_co[not us]
    pieces = (board.pawns, board.knights, board.bishops, board.rooks, board.queens, board.kings)
    ep = board.ep_square  # Maia-2: set after every double push, legal capture or not
    castling = (
        board.has_kingside_castling_rights(us),
        board.has_queenside_castling_rights(us),
        board.has_kingside_castling_rights(not us),
        board.has_queenside_castling_rights(not us),
    )
    boards = [bb & own for bb in pieces]
    boards += [bb & opp for bb in pieces]
    boards.append(_ALL_ONES)
    boards += [_ALL_ONES if right else 0 for right in castling]
    boards.append(0 if ep is None else chess.BB_SQUARES[ep])
    packed = np.array(boards, dtype="<u8").view(np.uint8).reshape(NUM_PLANES, 8)
    if us == chess.BLACK:
        packed = packed[:, ::-1].copy()  # vertical mirror = reversed rank bytes
    return packed


def unpack_planes(packed: np.ndarray) -> np.ndarray:
    """Packed ``uint8 [..., 18, 8]`` → 0/1 planes ``uint8 [..., 18, 8, 8]`` (plane, rank, file)."""
    packed = np.asarray(packed, dtype=np.uint8)
    return np.unpackbits(packed[..., None], axis=-1, bitorder="little")


def pack_planes(planes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`unpack_planes`: ``[..., 18, 8, 8]`` 0/1 → ``uint8 [..., 18, 8]``."""
    planes = np.asarray(planes, dtype=np.uint8)
    return np.packbits(planes, axis=-1, bitorder="little")[..., 0]


def board_planes(board: chess.Board) -> np.ndarray:
    """0/1 planes ``uint8 [18, 8, 8]`` of ``board`` (convenience for tests and notebooks)."""
    return unpack_planes(encode_board(board))


def vocabulary_summary() -> dict[str, int]:
    """Counts of the vocabulary's parts: queen-line, knight and promotion entries."""
    counts = {"queen_line": 0, "knight": 0, "promotion": 0}
    for move in _WHITE_MOVES:
        if move.promotion:
            counts["promotion"] += 1
        elif chess.square_manhattan_distance(move.from_square, move.to_square) == 3 and (
            chess.square_distance(move.from_square, move.to_square) == 2
        ):
            counts["knight"] += 1
        else:
            counts["queen_line"] += 1
    return counts
