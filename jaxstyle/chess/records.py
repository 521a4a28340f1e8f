"""Positions of one game → serialized dataset records, vectorised over the game.

The streaming build records each kept game's positions while python-chess parses it
(:class:`PositionRecorder` sees the board before every move), or, for the plain
standard-start games, takes them from the Rust PGN reader's arrays
(:func:`jaxstyle.chess.rust_reader.game_positions`, equal values as NumPy arrays), then
turns all of the game's positions into records at once with NumPy:

* planes come from the board's bitboards (6 piece sets × own/opponent colour, side to
  move, castling, en passant) as ``uint64 [n, 18]``; Black's positions are mirrored by a
  byte swap (reversing the 8 rank bytes of a bitboard is the vertical mirror);
* legal moves come from :mod:`jaxstyle.chess.movegen` for all positions at once (standard
  chess from the start position) or from python-chess (FEN starts, Chess960), looked up in
  the vocabulary through one ``(from << 9) | (to << 3) | promotion`` key table;
* records are ``tf.train.Example`` protos written directly (protobuf wire format), the
  same bytes tfds' ``FeaturesDict.serialize_example`` decodes, about 50× faster than it.

:func:`encoding.encode_board`, :func:`encoding.legal_move_indices` and
:func:`encoding.move_to_index` stay the per-position reference; tests check this module
against them position by position.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import chess
import numpy as np

from jaxstyle.chess import encoding, movegen

_ALL = np.uint64((1 << 64) - 1)
_FLIP_KEY = (56 << 9) | (56 << 3)


def _key_table() -> np.ndarray:
    table = np.full(1 << 15, -1, dtype=np.int16)
    for index, uci in enumerate(encoding.MOVE_VOCAB):
        move = chess.Move.from_uci(uci)
        table[(move.from_square << 9) | (move.to_square << 3) | (move.promotion or 0)] = index
    return table


_KEY_TO_INDEX = _key_table()


def move_key(move: chess.Move) -> int:
    """``(from << 9) | (to << 3) | promotion piece type`` (0 = none), White's frame."""
    return (move.from_square << 9) | (move.to_square << 3) | (move.promotion or 0)


@dataclasses.dataclass
class GamePositions:
    """Raw state of the positions of one game where a recorded colour was to move.

    Lists of equal length ``n`` (one entry per position) except ``legal_keys`` (flat), or
    NumPy arrays of the same values (``bitboards`` ``uint64 [n, 8]``, ``castling``
    ``bool [n, 4]``) when made from the Rust reader's arrays.
    """

    color: list[bool] = dataclasses.field(default_factory=list)
    ply: list[int] = dataclasses.field(default_factory=list)
    bitboards: list[tuple[int, ...]] = dataclasses.field(default_factory=list)
    castling: list[tuple[bool, bool, bool, bool]] = dataclasses.field(default_factory=list)
    ep: list[int] = dataclasses.field(default_factory=list)
    move_key: list[int] = dataclasses.field(default_factory=list)
    legal_keys: list[int] = dataclasses.field(default_factory=list)
    legal_count: list[int] = dataclasses.field(default_factory=list)


class PositionRecorder:
    """Collects the positions of ``colors`` during a parse (call :meth:`record` per move).

    ``clean_castling``: ``False`` reads castling rights straight from the rights bitmask,
    exact for standard chess from the start position (rights only ever shrink there);
    ``True`` asks python-chess per position (FEN starts, Chess960), also for the legal
    moves, which otherwise come from :func:`jaxstyle.chess.movegen.legal_keys` for the
    whole game at once.
    """

    def __init__(self, colors: frozenset[bool], clean_castling: bool):
        self.colors = colors
        self.clean_castling = clean_castling
        self.positions = GamePositions()

    def record(self, board: chess.Board, move: chess.Move, ply: int) -> None:
        turn = board.turn
        if turn not in self.colors:
            return
        p = self.positions
        p.color.append(turn)
        p.ply.append(ply)
        p.bitboards.append(
            (
                board.pawns,
                board.knights,
                board.bishops,
                board.rooks,
                board.queens,
                board.kings,
                board.occupied_co[chess.WHITE],
                board.occupied_co[chess.BLACK],
            )
        )
        if self.clean_castling:
            rights = (
                board.has_kingside_castling_rights(chess.WHITE),
                board.has_queenside_castling_rights(chess.WHITE),
                board.has_kingside_castling_rights(chess.BLACK),
                board.has_queenside_castling_rights(chess.BLACK),
            )
        else:
            cr = board.castling_rights
            rights = (
                bool(cr & chess.BB_H1),
                bool(cr & chess.BB_A1),
                bool(cr & chess.BB_H8),
                bool(cr & chess.BB_A8),
            )
        p.castling.append(rights)
        p.ep.append(-1 if board.ep_square is None else board.ep_square)
        p.move_key.append(move_key(move))
        if self.clean_castling:  # FEN start or Chess960: python-chess generates the moves
            keys = [
                (m.from_square << 9) | (m.to_square << 3) | (m.promotion or 0)
                for m in board.generate_legal_moves()
            ]
            p.legal_keys.extend(keys)
            p.legal_count.append(len(keys))


@dataclasses.dataclass
class EncodedPositions:
    """Arrays of one game's recorded positions.

    Attributes:
      planes: ``uint8 [n, 18, 8]`` packed planes (as :func:`encoding.encode_board`).
      legal: ``int16 [total]`` sorted legal-move indices, row ``i`` at
        ``legal[offsets[i]:offsets[i + 1]]``.
      offsets: ``int64 [n + 1]``.
      move: ``int32 [n]`` played move indices; ``ply``: ``int32 [n]``; ``color``: ``bool [n]``.
    """

    planes: np.ndarray
    legal: np.ndarray
    offsets: np.ndarray
    move: np.ndarray
    ply: np.ndarray
    color: np.ndarray

    def rows(self, start: int, stop: int) -> EncodedPositions:
        """Positions ``start:stop`` (e.g. one game of a chunk encoded at once)."""
        lo, hi = self.offsets[start], self.offsets[stop]
        return EncodedPositions(
            planes=self.planes[start:stop],
            legal=self.legal[lo:hi],
            offsets=self.offsets[start : stop + 1] - lo,
            move=self.move[start:stop],
            ply=self.ply[start:stop],
            color=self.color[start:stop],
        )


_ARRAY_FIELDS = {
    "color": (bool, ()),
    "ply": (np.int64, ()),
    "bitboards": (np.uint64, (8,)),
    "castling": (bool, (4,)),
    "ep": (np.int64, ()),
    "move_key": (np.int64, ()),
    "legal_keys": (np.int64, ()),
    "legal_count": (np.int64, ()),
}


def concat_positions(games: list[GamePositions]) -> GamePositions:
    """All positions of several games as one (to encode them in one vectorised call).

    Lists when every game holds lists (:class:`PositionRecorder`), else NumPy arrays (games
    from :func:`jaxstyle.chess.rust_reader.game_positions`); :func:`encode_positions` sees
    the same values either way.
    """
    out = GamePositions()
    arrays = any(isinstance(game.ply, np.ndarray) for game in games)
    for field in dataclasses.fields(GamePositions):
        if arrays:
            dtype, shape = _ARRAY_FIELDS[field.name]
            parts = [
                np.asarray(getattr(game, field.name), dtype=dtype).reshape((-1, *shape))
                for game in games
            ]
            setattr(out, field.name, np.concatenate(parts))
            continue
        merged = getattr(out, field.name)
        for game in games:
            merged.extend(getattr(game, field.name))
    return out


def encode_positions(p: GamePositions) -> EncodedPositions:
    """Vectorised encoding of a game's recorded positions (see the module docstring)."""
    n = len(p.ply)
    color = np.asarray(p.color, dtype=bool)
    bb = np.asarray(p.bitboards, dtype=np.uint64).reshape(n, 8)
    white, black = bb[:, 6], bb[:, 7]
    own = np.where(color, white, black)[:, None]
    opp = np.where(color, black, white)[:, None]
    castle = np.asarray(p.castling, dtype=bool).reshape(n, 4)
    own_castle = np.where(color[:, None], castle, castle[:, [2, 3, 0, 1]])
    ep = np.asarray(p.ep, dtype=np.int64)
    planes = np.empty((n, encoding.NUM_PLANES), dtype=np.uint64)
    planes[:, 0:6] = bb[:, :6] & own
    planes[:, 6:12] = bb[:, :6] & opp
    planes[:, 12] = _ALL
    planes[:, 13:17] = np.where(own_castle, _ALL, np.uint64(0))
    planes[:, 17] = np.where(
        ep >= 0, np.left_shift(np.uint64(1), np.maximum(ep, 0).astype(np.uint64)), np.uint64(0)
    )
    black_rows = ~color
    planes[black_rows] = planes[black_rows].byteswap()
    packed = planes.astype("<u8").view(np.uint8).reshape(n, encoding.NUM_PLANES, 8)

    flip = np.where(black_rows, _FLIP_KEY, 0)
    if len(p.legal_count) == n:  # python-chess' moves, in the real board's frame
        counts = np.asarray(p.legal_count, dtype=np.int64)
        rows = np.repeat(np.arange(n), counts)
        keys = np.asarray(p.legal_keys, dtype=np.int64) ^ flip[rows]
    else:  # vectorised generator on the mirrored bitboards (already the mover's frame)
        rows, keys = movegen.legal_keys(planes)
        counts = np.bincount(rows, minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    # sorted by (row, index) in one integer sort: index < 2**11
    legal = (np.sort((rows << 11) | _KEY_TO_INDEX[keys]) & 0x7FF).astype(np.int16)
    move = _KEY_TO_INDEX[np.asarray(p.move_key, dtype=np.int64) ^ flip].astype(np.int32)
    return EncodedPositions(
        planes=packed,
        legal=legal,
        offsets=offsets,
        move=move,
        ply=np.asarray(p.ply, dtype=np.int32),
        color=color,
    )


# --- tf.train.Example wire format -------------------------------------------------------


def _varint(value: int) -> bytes:
    """Protobuf varint of an int64 (negative values as 10-byte two's complement)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


varint = lru_cache(maxsize=1 << 12)(_varint)
"""Cached :func:`_varint` for the small values that repeat (lengths, moves, plies, Elo)."""


def _small_varints(values: np.ndarray, row_starts: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Varints of non-negative values < 2**14, flat, and the byte offset of each row start."""
    v = values.astype(np.uint16, copy=False)
    two = v >= 0x80
    nbytes = 1 + two.astype(np.int64)
    ends = np.cumsum(nbytes)
    starts = ends - nbytes
    out = np.empty(int(ends[-1]) if len(ends) else 0, dtype=np.uint8)
    out[starts] = np.where(two, (v & 0x7F) | 0x80, v).astype(np.uint8)
    out[starts[two] + 1] = (v[two] >> 7).astype(np.uint8)
    total = np.concatenate([[0], ends])
    return out.tobytes(), total[row_starts]


def _length_delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


@lru_cache(maxsize=64)
def _name_tag(name: str) -> bytes:
    return _length_delimited(b"\x0a", name.encode())


def int64_entry(name: str, packed_varints: bytes) -> bytes:
    """One ``Features.feature`` map entry holding an ``int64_list`` of packed varints."""
    int64_list = b"\x0a" + varint(len(packed_varints)) + packed_varints
    feature = b"\x1a" + varint(len(int64_list)) + int64_list
    inner = _name_tag(name) + b"\x12" + varint(len(feature)) + feature
    return b"\x0a" + varint(len(inner)) + inner


@lru_cache(maxsize=1 << 14)
def scalar_entry(name: str, value: int) -> bytes:
    """The map entry of a scalar feature (cached: moves, plies and Elo repeat)."""
    return int64_entry(name, varint(int(value)))


def example_bytes(entries: bytes) -> bytes:
    """A ``tf.train.Example`` from concatenated feature map entries."""
    return _length_delimited(b"\x0a", entries)


def record_bodies(enc: EncodedPositions, elo: tuple[int, int]) -> list[bytes]:
    """Per position, the feature entries other than ``player`` and ``game``.

    ``elo`` = (White's, Black's) Elo; each record gets its mover's and the opponent's.
    """
    n = len(enc.ply)
    plane_bytes, plane_at = _small_varints(
        enc.planes.reshape(-1), np.arange(n + 1) * (encoding.NUM_PLANES * 8)
    )
    legal_bytes, legal_at = _small_varints(enc.legal, enc.offsets)
    white_elo = scalar_entry("elo", elo[0]) + scalar_entry("opponent_elo", elo[1])
    black_elo = scalar_entry("elo", elo[1]) + scalar_entry("opponent_elo", elo[0])
    plane_at, legal_at = plane_at.tolist(), legal_at.tolist()
    moves, plies, colors = enc.move.tolist(), enc.ply.tolist(), enc.color.tolist()
    return [
        _entry_head("planes", plane_at[i + 1] - plane_at[i])
        + plane_bytes[plane_at[i] : plane_at[i + 1]]
        + _entry_head("legal", legal_at[i + 1] - legal_at[i])
        + legal_bytes[legal_at[i] : legal_at[i + 1]]
        + scalar_entry("move", moves[i])
        + scalar_entry("ply", plies[i])
        + (white_elo if colors[i] else black_elo)
        for i in range(n)
    ]


@lru_cache(maxsize=4096)
def _entry_head(name: str, size: int) -> bytes:
    """:func:`int64_entry` of ``size`` bytes of packed varints, without those bytes."""
    entry = int64_entry(name, bytes(size))
    return entry[: len(entry) - size]


def full_record(player: int, game: int, body: bytes) -> bytes:
    """The serialized example: ``player`` and ``game`` entries, then the body.

    Not cached: game ordinals never repeat across a build (a cache would only fill up).
    """
    ids = int64_entry("player", _varint(player)) + int64_entry("game", _varint(game))
    return example_bytes(ids + body)
