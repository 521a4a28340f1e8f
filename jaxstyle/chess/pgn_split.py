"""Cutting a PGN byte stream into whole games without parsing them.

The streaming build decompresses in one process and hands *chunks of whole games* to
worker processes; this module finds the game boundaries at a few hundred thousand games
per second, with python-chess' rules: headers may hold one empty line, an empty line
after the movetext ends a game (not inside a ``{…}`` comment), lines starting with ``%``
or ``;`` are comments. Each game is returned as its raw bytes; parsing and decoding them
(UTF-8, else Latin-1) is the workers' job.

Damage is counted, never fatal: a zstd stream cut inside a frame (``truncated_stream``) or
with a bad frame or checksum (``corrupt_stream``) ends that file after the last whole game
before the damage; the game in progress there is counted, and the run goes on with the next
file.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import chess.pgn

from jaxstyle.chess.sources import (
    CorruptStreamError,
    TruncatedStreamError,
    decode_pgn,
    open_bytes,
)

_PRE, _HEAD, _HEAD_BLANK, _MOVES, _COMMENT = range(5)
_TAG = re.compile(chess.pgn.TAG_REGEX.pattern)
_BOM = b"\xef\xbb\xbf"


@dataclasses.dataclass(frozen=True)
class GameText:
    """One game as cut from its file.

    Attributes:
      data: the game's bytes (headers, movetext, its comment lines).
      header_end: length of the header part of ``data`` (0 when the game has no headers).
      ordinal: index of the game in its file (0 = first).
    """

    data: bytes
    header_end: int
    ordinal: int

    def headers(self) -> dict[str, str]:
        """Tag pairs of the header part (python-chess' tag syntax; malformed tags ignored)."""
        return parse_headers(self.data[: self.header_end])


def parse_headers(data: bytes) -> dict[str, str]:
    """``{"White": "…", …}`` of PGN header lines (bytes, UTF-8 or Latin-1)."""
    headers = {}
    for line in decode_pgn(data).splitlines():
        match = _TAG.match(line)
        if match:
            headers[match.group(1)] = match.group(2)
    return headers


def _in_comment_after(line: bytes, in_comment: bool) -> bool:
    """Whether a movetext line leaves a ``{`` comment open (``;`` starts a line comment)."""
    pos = 0
    while True:
        if in_comment:
            close = line.find(b"}", pos)
            if close < 0:
                return True
            in_comment, pos = False, close + 1
        else:
            brace, semi = line.find(b"{", pos), line.find(b";", pos)
            if brace < 0 or 0 <= semi < brace:
                return False
            in_comment, pos = True, brace + 1


def split_games(lines: Iterator[bytes]) -> Iterator[GameText]:
    """Cuts a stream of byte lines into :class:`GameText` s (see the module docstring)."""
    state, parts, header_end, size, ordinal = _PRE, [], 0, 0, 0
    for line in lines:
        blank = line.isspace() or not line
        fresh = state != _COMMENT
        if fresh and (line.startswith(b"%") or line.startswith(b";")):
            if state != _PRE:
                parts.append(line)
                size += len(line)
            continue
        if state == _PRE:
            if blank:
                continue
            state = _HEAD if line.startswith(b"[") else _MOVES
            header_end = 0
        elif state == _HEAD or state == _HEAD_BLANK:
            if blank:
                if state == _HEAD:
                    state = _HEAD_BLANK
                    parts.append(line)
                    size += len(line)
                    continue
                yield GameText(b"".join(parts), size, ordinal)
                state, parts, size, ordinal = _PRE, [], 0, ordinal + 1
                continue
            if line.startswith(b"["):
                state = _HEAD
            else:
                state, header_end = _MOVES, size
        elif state == _MOVES and blank:
            yield GameText(b"".join(parts), header_end, ordinal)
            state, parts, size, ordinal = _PRE, [], 0, ordinal + 1
            continue
        if state == _HEAD:
            header_end = size + len(line)
        parts.append(line)
        size += len(line)
        if state in (_MOVES, _COMMENT):
            state = _COMMENT if _in_comment_after(line, state == _COMMENT) else _MOVES
    if state != _PRE:
        if state in (_HEAD, _HEAD_BLANK):
            header_end = size
        yield GameText(b"".join(parts), header_end, ordinal)


@dataclasses.dataclass
class StreamDamage:
    """What stopped a file early: ``reason`` (``truncated_stream`` / ``corrupt_stream``),
    the message, and how many whole games came before it."""

    reason: str
    message: str
    games_before: int


def iter_file_games(path: Path, damage: list[StreamDamage] | None = None) -> Iterator[GameText]:
    """The games of one ``.pgn`` / ``.pgn.zst`` file, in order.

    A damaged stream ends the file: the game in progress at the damage is dropped and a
    :class:`StreamDamage` is appended to ``damage`` (when given).
    """
    count = 0
    with open_bytes(path) as handle:
        lines = _strip_bom(iter(handle))
        try:
            for game in split_games(lines):
                yield game
                count += 1
        except (TruncatedStreamError, CorruptStreamError) as error:
            reason = (
                "truncated_stream"
                if isinstance(error, TruncatedStreamError)
                else ("corrupt_stream")
            )
            if damage is not None:
                damage.append(StreamDamage(reason, str(error), count))


def _strip_bom(lines: Iterator[bytes]) -> Iterator[bytes]:
    first = next(lines, None)
    if first is None:
        return
    yield first[len(_BOM) :] if first.startswith(_BOM) else first
    yield from lines


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Whole games handed to a worker.

    Attributes:
      index: position of the chunk in the whole build (0, 1, …).
      file_index: index of the games' file in the build's source list.
      first_game: global ordinal of the first game (over all files, every game counted).
      games: the games.
    """

    index: int
    file_index: int
    first_game: int
    games: tuple[GameText, ...]


def iter_chunks(
    files: Sequence[Path],
    chunk_games: int,
    damage: list[StreamDamage] | None = None,
    *,
    file_offset: int = 0,
    first_game: int = 0,
) -> Iterator[Chunk]:
    """Chunks of at most ``chunk_games`` games; a chunk never spans two files.

    ``file_offset`` / ``first_game``: file index and global game ordinal of ``files[0]``
    (to cut one file of a longer list, as the Beam pipeline does).
    """
    index, first = 0, first_game
    for file_index, path in enumerate(files, start=file_offset):
        batch: list[GameText] = []
        for game in iter_file_games(path, damage):
            batch.append(game)
            if len(batch) == chunk_games:
                yield Chunk(index, file_index, first, tuple(batch))
                index, first, batch = index + 1, first + len(batch), []
        if batch:
            yield Chunk(index, file_index, first, tuple(batch))
            index, first = index + 1, first + len(batch)
