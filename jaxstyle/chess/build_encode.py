"""Stage A of the streaming build: one chunk of whole games → per-bucket spill entries.

Runs in worker processes (local build) or Beam workers; a pure function of the chunk and
the plan. For every kept game and every selected player in it, python-chess parses the
movetext while :class:`~jaxstyle.chess.records.PositionRecorder` records the player's
positions, and the positions become record bodies (:func:`records.record_bodies`).

With ``parser="auto"`` (when ``rust_pgn_reader_python_binding`` is installed) or
``"rust"``, the plain standard-start games of a chunk are parsed by the Rust reader in one
call instead and their positions taken from its arrays (:mod:`jaxstyle.chess.rust_reader`
says which games qualify); every other game still goes through python-chess. The output
is byte-identical whichever parser is used.

A *spill entry* is one player's side of one game, bytes::

    <i player id> <q game ordinal> <i opponent id or -1> <i positions> <H key length>
    key (UTF-8) then, per position, <I body length> body

Entries carry no split: the split needs all of a player's games and is made in stage B.
"""

from __future__ import annotations

import dataclasses
import struct
from collections import Counter
from collections.abc import Iterator

import chess

from jaxstyle.chess import records, rust_reader
from jaxstyle.chess.build_plan import Plan
from jaxstyle.chess.pgn import ReadStats, parse_game_recorded, selection_check
from jaxstyle.chess.pgn_split import Chunk

_HEAD = struct.Struct("<iqiiH")
_LEN = struct.Struct("<I")


@dataclasses.dataclass
class ChunkResult:
    """What a worker returns for one chunk.

    Attributes:
      index: the chunk's index.
      spill: bucket → concatenated spill entries.
      kept: provisional player id → kept games in this chunk.
      stats: the chunk's reader counts (``files`` empty).
      positions: positions encoded.
    """

    index: int
    spill: dict[int, bytes]
    kept: dict[int, int]
    stats: ReadStats
    positions: int


class ChunkEncoder:
    """Encodes chunks for one plan (built once per worker process).

    ``parser``: ``"auto"`` (the Rust reader for the plain games when it is installed),
    ``"rust"`` (the same, an :class:`ImportError` without it) or ``"python-chess"``.
    """

    def __init__(self, plan: Plan, parser: str = "auto"):
        self.plan = plan
        self.parser = parser
        self.reader = rust_reader.resolve_parser(parser)
        self.ids = {name: i for i, name in enumerate(plan.players)}
        self.bucket_of = plan.bucket_of().tolist()
        self.file_names = [s.rsplit("/", 1)[-1] for s in plan.sources]
        self.check = selection_check(plan.game_filter, set(self.ids), "min_games")

    def _recorder(self, headers: dict[str, str]) -> records.PositionRecorder:
        white, black = headers.get("White", "?").strip(), headers.get("Black", "?").strip()
        colors = set()
        if white in self.ids:
            colors.add(chess.WHITE)
        if black in self.ids and black != white:
            colors.add(chess.BLACK)
        return records.PositionRecorder(frozenset(colors), clean_castling=False)

    def __call__(self, chunk: Chunk) -> ChunkResult:
        stats, kept = ReadStats(), Counter()
        file_name = self.file_names[chunk.file_index]
        fast, rejected = self._rust_games(chunk, file_name) if self.reader else ({}, {})
        parsed = []
        for offset, game in enumerate(chunk.games):
            stats.games_seen += 1
            if offset in rejected:
                stats.skip(rejected[offset])
                continue
            if offset in fast:
                record, recorder = fast[offset]
                reason = "too_short" if record.num_plies < self.plan.game_filter.min_plies else None
            else:
                record, reason, recorder = parse_game_recorded(
                    game, file_name, self.check, self.plan.game_filter, self._recorder
                )
            if reason is not None:
                stats.skip(reason)
                continue
            stats.games_kept += 1
            parsed.append((record, recorder, chunk.first_game + offset))
        spill: dict[int, list[bytes]] = {}
        positions = 0
        for (record, recorder, ordinal), enc in zip(parsed, self._encode(parsed)):
            for entry_pid, bucket, entry in self._entries(record, recorder, ordinal, enc):
                spill.setdefault(bucket, []).append(entry)
                kept[entry_pid] += 1
            positions += len(enc.ply)
        return ChunkResult(
            index=chunk.index,
            spill={b: b"".join(parts) for b, parts in spill.items()},
            kept=dict(kept),
            stats=stats,
            positions=positions,
        )

    def _rust_games(self, chunk: Chunk, file_name: str):
        """``(offset → (record, recorder))`` of the games the Rust reader parsed, and
        ``(offset → reason)`` of those whose headers fail the check (python-chess' reason)."""
        cands, rejected = rust_reader.candidates_of(chunk.games, self.check)
        rc = rust_reader.parse_candidates(self.reader, cands) if cands else None
        fast = {}
        if rc is None:
            return fast, rejected
        for i, cand in enumerate(cands):
            if not rc.ok[i]:
                continue
            ordinal = chunk.games[cand.offset].ordinal
            record = rust_reader.game_record(cand, rc, i, file_name, ordinal)
            recorder = self._recorder(cand.headers)
            recorder.positions = rust_reader.game_positions(rc, i, recorder.colors)
            fast[cand.offset] = (record, recorder)
        return fast, rejected

    @staticmethod
    def _encode(parsed) -> list[records.EncodedPositions]:
        """Each game's encoded positions; the standard-start games in vectorised calls of
        about :data:`BATCH_POSITIONS` positions (larger arrays fall out of the CPU caches)."""
        fast = [i for i, (_, rec, _) in enumerate(parsed) if not rec.clean_castling]
        out: list = [None] * len(parsed)
        for batch in _batches(fast, [len(parsed[i][1].positions.ply) for i in fast]):
            games = [parsed[i][1].positions for i in batch]
            enc = records.encode_positions(records.concat_positions(games))
            start = 0
            for i, game in zip(batch, games):
                out[i] = enc.rows(start, start + len(game.ply))
                start += len(game.ply)
        for i, (_, recorder, _) in enumerate(parsed):
            if out[i] is None:
                out[i] = records.encode_positions(recorder.positions)
        return out

    def _entries(self, record, recorder, ordinal: int, enc) -> Iterator[tuple[int, int, bytes]]:
        bodies = records.record_bodies(enc, (record.white_elo, record.black_elo))
        sides = {
            chess.WHITE: self.ids.get(record.white, -1),
            chess.BLACK: self.ids.get(record.black, -1),
        }
        key = record.key.encode()
        for color in sorted(recorder.colors, reverse=True):  # White first
            pid, opponent = sides[color], sides[not color]
            mine = [body for body, c in zip(bodies, enc.color.tolist()) if c == color]
            parts = [_HEAD.pack(pid, ordinal, opponent, len(mine), len(key)), key]
            for body in mine:
                parts += [_LEN.pack(len(body)), body]
            yield pid, self.bucket_of[pid], b"".join(parts)


BATCH_POSITIONS = 4096
"""Positions per vectorised :func:`records.encode_positions` call."""


def _batches(items: list[int], sizes: list[int]) -> Iterator[list[int]]:
    """``items`` cut into consecutive runs of about :data:`BATCH_POSITIONS` positions."""
    batch, total = [], 0
    for item, size in zip(items, sizes):
        batch.append(item)
        total += size
        if total >= BATCH_POSITIONS:
            yield batch
            batch, total = [], 0
    if batch:
        yield batch


@dataclasses.dataclass(frozen=True)
class SpillEntry:
    """A decoded spill entry (see the module docstring); ``bodies`` in ply order."""

    player: int
    ordinal: int
    opponent: int
    key: str
    bodies: tuple[bytes, ...]


def iter_spill(blob: bytes) -> Iterator[SpillEntry]:
    """Decodes concatenated spill entries."""
    pos, end = 0, len(blob)
    while pos < end:
        player, ordinal, opponent, count, key_len = _HEAD.unpack_from(blob, pos)
        pos += _HEAD.size
        key = blob[pos : pos + key_len].decode()
        pos += key_len
        bodies = []
        for _ in range(count):
            (n,) = _LEN.unpack_from(blob, pos)
            pos += _LEN.size
            bodies.append(blob[pos : pos + n])
            pos += n
        yield SpillEntry(player, ordinal, opponent, key, tuple(bodies))
