"""Streaming PGN reader: games → :class:`GameRecord` s, with skip accounting.

python-chess parses and is the authority on legality; :mod:`jaxstyle.chess.pgn_filters`
decides which headers pass; :mod:`jaxstyle.chess.pgn_split` cuts files into games. Every
game read either ends up kept or is counted under exactly one reason in
:class:`ReadStats` — nothing shrinks silently, and nothing in a game's content (BOM,
comments, variations, NAGs, empty lines between headers, illegal or unparsable moves,
null moves, variants, Latin-1 bytes) stops the run.

Reasons, in the order they are checked (the header reasons of
:mod:`~jaxstyle.chess.pgn_filters` first, then):

================ ============================================================
bad_fen          a ``FEN`` header python-chess cannot read (custom starts allowed)
not_selected     neither player is in the ``players`` allow-list
min_games        neither player is selected: fewer than ``min_games_per_player`` kept
                 games, or not among the ``max_players`` most active
illegal_move     a move python-chess rejects as illegal, ambiguous or unparsable
null_move        a null move (``--``, ``Z0``) in the mainline
unterminated     no result token (``1-0``, ``0-1``, ``1/2-1/2``, ``*``) ends the movetext:
                 the game was cut (a plain ``.pgn`` cut mid-game)
too_short        fewer plies than ``min_plies``
duplicate        a game whose key (``Site`` URL / ``GameId``) was already kept
parse_error      python-chess raised while reading the game
truncated_stream the game at the cut of a truncated ``.zst`` stream
corrupt_stream   the game at a bad frame or checksum of a ``.zst`` stream (the rest of that
                 file is lost; the other files are read)
================ ============================================================
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import chess
import chess.pgn

from jaxstyle.chess.pgn_filters import (
    TIME_CONTROL_CLASSES,
    GameFilter,
    candidate_players,
    is_anonymous,
    is_rated,
    parse_elo,
    time_control_class,
)
from jaxstyle.chess.pgn_split import GameText, StreamDamage, iter_file_games
from jaxstyle.chess.sources import decode_pgn, resolve_sources

__all__ = [
    "TIME_CONTROL_CLASSES",
    "GameFilter",
    "GameRecord",
    "ReadStats",
    "candidate_players",
    "count_player_games",
    "is_anonymous",
    "is_rated",
    "iter_games",
    "parse_elo",
    "parse_game",
    "time_control_class",
]

HeaderCheck = Callable[[dict[str, str]], "str | None"]
RecorderFactory = Callable[[dict[str, str]], object]


@dataclasses.dataclass(frozen=True)
class GameRecord:
    """One kept game.

    Attributes:
      key: stable identifier: ``Site`` when it is a URL (Lichess), else ``GameId``, else
        ``"<file name>#<ordinal in file>"``.
      white, black: player names.
      white_elo, black_elo: Elo, ``-1`` when unknown.
      time_control: raw ``TimeControl`` header ("" when absent).
      result: ``1-0``, ``0-1``, ``1/2-1/2`` or ``*``.
      fen: start position (standard start unless the filter allows custom starts).
      moves: mainline in UCI notation, e.g. ``("e2e4", "e7e5")``.
    """

    key: str
    white: str
    black: str
    white_elo: int
    black_elo: int
    time_control: str
    result: str
    fen: str
    moves: tuple[str, ...]

    @property
    def num_plies(self) -> int:
        return len(self.moves)

    def color_of(self, player: str) -> chess.Color:
        """``chess.WHITE`` or ``chess.BLACK`` for ``player`` (White when they played themselves)."""
        if player == self.white:
            return chess.WHITE
        if player == self.black:
            return chess.BLACK
        raise KeyError(f"{player} did not play game {self.key}")

    def elo_of(self, color: chess.Color) -> int:
        return self.white_elo if color == chess.WHITE else self.black_elo

    def plies_of(self, color: chess.Color) -> range:
        """Ply indices (0 = first move of the game) at which ``color`` is to move."""
        white_first = self.fen.split()[1] == "w"
        first = 0 if white_first == (color == chess.WHITE) else 1
        return range(first, self.num_plies, 2)


@dataclasses.dataclass
class ReadStats:
    """Counts of games seen, kept and skipped (by reason) over one read."""

    files: list[str] = dataclasses.field(default_factory=list)
    games_seen: int = 0
    games_kept: int = 0
    skipped: Counter = dataclasses.field(default_factory=Counter)
    messages: list[str] = dataclasses.field(default_factory=list)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] += count

    def summary_line(self, kept: str = "kept") -> str:
        """One line such as ``read 14 games from 2 files: kept 9, skipped 5 (variant=3, …)``;
        ``kept`` names the kept count (the header pass says ``"passed the headers"``)."""
        source = f"{len(self.files)} file" + ("s" if len(self.files) != 1 else "")
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{r}={n}" for r, n in sorted(self.skipped.items()))
        line = f"read {self.games_seen} games from {source}: {kept} {self.games_kept}"
        line += f", skipped {skipped}" + (f" ({reasons})" if reasons else "")
        return line + "".join(f"; {m}" for m in self.messages)

    def add_damage(self, damage: StreamDamage) -> None:
        """Counts the game lost at a damaged stream and keeps the message."""
        self.games_seen += 1
        self.skip(damage.reason)
        self.messages.append(f"{damage.message}; kept the {damage.games_before} games before it")

    def merge(self, other: ReadStats) -> None:
        """Adds ``other``'s counts and messages (files are not merged)."""
        self.games_seen += other.games_seen
        self.games_kept += other.games_kept
        self.skipped.update(other.skipped)
        self.messages.extend(other.messages)

    def as_dict(self) -> dict:
        return {
            "files": list(self.files),
            "games_seen": self.games_seen,
            "games_kept": self.games_kept,
            "skipped": dict(sorted(self.skipped.items())),
            "messages": list(self.messages),
        }


class _GameVisitor(chess.pgn.BaseVisitor):
    """Collects headers and mainline UCI moves; variations are skipped, errors recorded."""

    def __init__(
        self,
        header_check: HeaderCheck,
        allow_chess960: bool,
        recorder_factory: RecorderFactory | None = None,
    ):
        self._header_check = header_check
        self._allow_chess960 = allow_chess960
        self._recorder_factory = recorder_factory
        self.recorder = None
        self.headers: dict[str, str] = {}
        self.moves: list[str] = []
        self.fen = chess.STARTING_FEN
        self.reason: str | None = None
        self.terminated = False
        self._started = False

    def visit_header(self, tagname: str, tagvalue: str) -> None:
        self.headers[tagname] = tagvalue

    def end_headers(self):
        self.reason = self._header_check(self.headers)
        if self.reason is not None:
            return chess.pgn.SKIP
        if self._recorder_factory is not None:
            self.recorder = self._recorder_factory(self.headers)
        return None

    def visit_board(self, board: chess.Board) -> None:
        if not self._started:
            self._started = True
            self.fen = board.fen()
            if type(board) is not chess.Board or (board.chess960 and not self._allow_chess960):
                self.reason = self.reason or "variant"
            if self.recorder is not None:
                self.recorder.clean_castling = board.chess960 or self.fen != chess.STARTING_FEN

    def begin_variation(self):
        return chess.pgn.SKIP

    def visit_move(self, board: chess.Board, move: chess.Move) -> None:
        if self.reason is not None:
            return
        if not move:
            self.reason = "null_move"
            return
        if self.recorder is not None:
            self.recorder.record(board, move, len(self.moves))
        self.moves.append(move.uci())

    def visit_result(self, result: str) -> None:
        self.terminated = True

    def handle_error(self, error: Exception) -> None:
        # before the first board python-chess failed on the FEN, afterwards on a move
        self.reason = self.reason or ("illegal_move" if self._started else "bad_fen")

    def result(self) -> _GameVisitor:
        return self


def game_key(headers: dict[str, str], file_name: str, ordinal: int) -> str:
    """``Site`` when it is a URL (Lichess), else ``GameId``, else ``<file name>#<ordinal>``."""
    site = headers.get("Site", "")
    if site.startswith("http"):
        return site
    if headers.get("GameId"):
        return headers["GameId"]
    return f"{file_name}#{ordinal}"


def parse_game(
    game: GameText,
    file_name: str,
    header_check: HeaderCheck,
    game_filter: GameFilter,
) -> tuple[GameRecord | None, str | None]:
    """Parses one cut game: ``(record, None)`` when kept, else ``(None, reason)``.

    :func:`parse_game_recorded` also takes a ``recorder_factory(headers)``: an object whose
    ``record(board, move, ply)`` sees the board before every mainline move (e.g. a
    :class:`jaxstyle.chess.records.PositionRecorder`), returned with the record.
    """
    record, reason, _ = parse_game_recorded(game, file_name, header_check, game_filter, None)
    return record, reason


def parse_game_recorded(
    game: GameText,
    file_name: str,
    header_check: HeaderCheck,
    game_filter: GameFilter,
    recorder_factory: RecorderFactory | None,
) -> tuple[GameRecord | None, str | None, object | None]:
    """:func:`parse_game` that also returns the recorder made for the game (or None)."""
    try:
        visitor = chess.pgn.read_game(
            io.StringIO(decode_pgn(game.data)),
            Visitor=lambda: _GameVisitor(
                header_check, not game_filter.standard_only, recorder_factory
            ),
        )
    except Exception:  # noqa: BLE001 - a parser crash must not stop the run
        return None, "parse_error", None
    if visitor is None:
        return None, "parse_error", None
    reason = visitor.reason
    if reason is None and not visitor.terminated:
        reason = "unterminated"
    if reason is None and len(visitor.moves) < game_filter.min_plies:
        reason = "too_short"
    if reason is not None:
        return None, reason, None
    record = record_from_headers(
        visitor.headers, file_name, game.ordinal, visitor.fen, tuple(visitor.moves)
    )
    return record, None, visitor.recorder


def record_from_headers(
    headers: dict[str, str], file_name: str, ordinal: int, fen: str, moves: tuple[str, ...]
) -> GameRecord:
    """The :class:`GameRecord` of a parsed game (both parsers of the build make it here)."""
    return GameRecord(
        key=game_key(headers, file_name, ordinal),
        white=headers.get("White", "?").strip(),
        black=headers.get("Black", "?").strip(),
        white_elo=parse_elo(headers.get("WhiteElo")),
        black_elo=parse_elo(headers.get("BlackElo")),
        time_control=headers.get("TimeControl", ""),
        result=headers.get("Result", "*"),
        fen=fen,
        moves=moves,
    )


def selection_check(
    game_filter: GameFilter,
    players: set[str] | None = None,
    unselected_reason: str = "not_selected",
) -> HeaderCheck:
    """Header check of ``game_filter`` plus the allow-list and (when given) ``players``."""
    allowed = set(game_filter.players) if game_filter.players else None

    def header_check(headers: dict[str, str]) -> str | None:
        reason = game_filter.header_reason(headers)
        if reason is None and (allowed is not None or players is not None):
            names = candidate_players(headers)
            if allowed is not None and not any(name in allowed for name in names):
                reason = "not_selected"
            elif players is not None and not any(name in players for name in names):
                reason = unselected_reason
        return reason

    return header_check


def iter_games(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    game_filter: GameFilter | None = None,
    stats: ReadStats | None = None,
    players: set[str] | None = None,
    unselected_reason: str = "not_selected",
) -> Iterator[GameRecord]:
    """Streams the games of ``sources`` that pass ``game_filter``'s game-level checks.

    Player-level checks (``min_games_per_player``) need a whole pass; use
    :func:`jaxstyle.chess.corpus.collect_corpus` or the streaming build
    :func:`jaxstyle.chess.build.build`. Games with no player in the filter's allow-list are
    counted as ``not_selected``; games with no player in ``players`` (when given) as
    ``unselected_reason``. ``stats`` receives the counts.
    """
    game_filter = game_filter or GameFilter()
    stats = stats if stats is not None else ReadStats()
    header_check = selection_check(game_filter, players, unselected_reason)
    for path in resolve_sources(sources):
        stats.files.append(str(path))
        damage: list[StreamDamage] = []
        for game in iter_file_games(path, damage):
            stats.games_seen += 1
            record, reason = parse_game(game, path.name, header_check, game_filter)
            if reason is not None:
                stats.skip(reason)
                continue
            stats.games_kept += 1
            yield record
        for item in damage:
            stats.add_damage(item)


def count_player_games(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    game_filter: GameFilter | None = None,
) -> tuple[Counter, ReadStats]:
    """Header-only pass: games per player passing the header checks (movetext not parsed).

    Returns the per-player counts and the pass's stats, where ``games_kept`` counts the
    games whose headers passed.
    """
    game_filter = game_filter or GameFilter()
    header_check = selection_check(game_filter)
    counts: Counter = Counter()
    stats = ReadStats()
    for path in resolve_sources(sources):
        stats.files.append(str(path))
        damage: list[StreamDamage] = []
        for game in iter_file_games(path, damage):
            stats.games_seen += 1
            headers = game.headers()
            reason = header_check(headers)
            if reason is None:
                stats.games_kept += 1
                counts.update(set(candidate_players(headers)))
            else:
                stats.skip(reason)
        for item in damage:
            stats.add_damage(item)
    return counts, stats
