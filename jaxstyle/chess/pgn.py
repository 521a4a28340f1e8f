"""Streaming PGN reader with Lichess-style filters and skip accounting.

python-chess parses; this module decides which games to keep and why others are
skipped. Every game read either ends up kept or is counted under exactly one reason in
:class:`ReadStats` — nothing shrinks silently, and nothing in a game's content (BOM,
comments, variations, NAGs, empty lines between headers, illegal or unparsable moves,
null moves, variants) stops the run.

Reasons, in the order they are checked (header checks first, then the moves):

================ ============================================================
variant          ``Variant`` header other than standard chess (chess960, crazyhouse, …)
custom_start     a ``FEN`` header other than the start position (``standard_start_only``)
bad_fen          a ``FEN`` header python-chess cannot read (custom starts allowed)
unrated          not rated (``Event`` lacks "rated"; with ``rated_only``)
time_control     time-control class not in ``time_controls``
elo              a player's Elo missing or below ``min_elo``
unknown_player   neither player has a name (``?`` or empty)
not_selected     neither player is in the ``players`` allow-list
min_games        neither player is selected: fewer than ``min_games_per_player`` kept
                 games, or not among the ``max_players`` most active
illegal_move     a move python-chess rejects as illegal, ambiguous or unparsable
null_move        a null move (``--``, ``Z0``) in the mainline
too_short        fewer plies than ``min_plies``
duplicate        a game whose key (``Site`` URL / ``GameId``) was already kept
parse_error      python-chess raised while reading the game
truncated_stream the game at the cut of a truncated ``.zst`` stream
================ ============================================================
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import chess
import chess.pgn

from jaxstyle.chess.sources import (
    DataError,
    TruncatedStreamError,
    open_text,
    resolve_sources,
)

TIME_CONTROL_CLASSES = ("ultrabullet", "bullet", "blitz", "rapid", "classical", "correspondence")
_STANDARD_VARIANTS = {"", "standard", "chess", "classical", "normal", "from position"}
_UNKNOWN_NAMES = {"", "?", "-"}


def time_control_class(time_control: str | None) -> str:
    """Lichess speed class of a PGN ``TimeControl`` value.

    Lichess' rule: estimated duration = base + 40 × increment seconds; < 30 s ultrabullet,
    < 180 s bullet, < 480 s blitz, < 1500 s rapid, otherwise classical. ``-`` is
    correspondence; multi-period FIDE controls (``40/7200:…``) use their first period's
    seconds as the base. Returns ``"unknown"`` when the value is missing or unparsable.
    """
    if not time_control or time_control == "?":
        return "unknown"
    if time_control.strip() == "-":
        return "correspondence"
    period = time_control.split(":")[0].strip()
    base_text, _, inc_text = period.partition("+")
    if "/" in base_text:
        base_text = base_text.split("/", 1)[1]
    try:
        base = float(base_text)
        increment = float(inc_text) if inc_text else 0.0
    except ValueError:
        return "unknown"
    seconds = base + 40.0 * increment
    if seconds < 30:
        return "ultrabullet"
    if seconds < 180:
        return "bullet"
    if seconds < 480:
        return "blitz"
    if seconds < 1500:
        return "rapid"
    return "classical"


def parse_elo(value: str | None) -> int:
    """``WhiteElo``/``BlackElo`` header → int; ``-1`` when missing or not a number."""
    try:
        return int(value) if value else -1
    except ValueError:
        return -1


def is_rated(headers: dict[str, str]) -> bool:
    """Lichess marks rated games in ``Event`` ("Rated Blitz game"); other files rarely do."""
    event = headers.get("Event", "").lower()
    return "rated" in event and "unrated" not in event and "casual" not in event


@dataclasses.dataclass(frozen=True)
class GameFilter:
    """Which games and players to keep.

    Attributes:
      standard_only: skip every non-standard ``Variant`` (always on for encoding).
      standard_start_only: skip games with a ``FEN`` header other than the start position.
      time_controls: allowed time-control classes (see :func:`time_control_class`);
        ``None`` allows all.
      rated_only: keep only rated games.
      min_elo: minimum Elo of both players; ``None`` disables the check.
      min_plies: minimum number of half-moves.
      min_games_per_player: a player is kept only with at least this many kept games.
      players: optional allow-list of player names.
      max_players: keep only this many players, those with the most games (ties by name).
    """

    standard_only: bool = True
    standard_start_only: bool = True
    time_controls: tuple[str, ...] | None = None
    rated_only: bool = False
    min_elo: int | None = None
    min_plies: int = 1
    min_games_per_player: int = 1
    players: tuple[str, ...] | None = None
    max_players: int | None = None

    def __post_init__(self):
        if self.time_controls is not None:
            bad = set(self.time_controls) - set(TIME_CONTROL_CLASSES) - {"unknown"}
            if bad:
                raise ValueError(
                    f"unknown time-control class {sorted(bad)}; use {TIME_CONTROL_CLASSES}"
                )

    def header_reason(self, headers: dict[str, str]) -> str | None:
        """First header-level skip reason of a game, or None when its headers pass."""
        variant = headers.get("Variant", "").strip().lower()
        if self.standard_only and variant not in _STANDARD_VARIANTS:
            return "variant"
        fen = headers.get("FEN")
        if self.standard_start_only and fen and fen.strip() != chess.STARTING_FEN:
            return "custom_start"
        if self.rated_only and not is_rated(headers):
            return "unrated"
        if self.time_controls is not None:
            if time_control_class(headers.get("TimeControl")) not in self.time_controls:
                return "time_control"
        if self.min_elo is not None:
            elos = (parse_elo(headers.get("WhiteElo")), parse_elo(headers.get("BlackElo")))
            if min(elos) < self.min_elo:
                return "elo"
        if not candidate_players(headers):
            return "unknown_player"
        return None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GameFilter:
        """Inverse of :meth:`as_dict` (also after a JSON round trip: lists become tuples)."""
        data = dict(data)
        for key in ("time_controls", "players"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


def candidate_players(headers: dict[str, str]) -> list[str]:
    """Named players of a game (``White`` then ``Black``), unknown names dropped."""
    names = (headers.get("White", "").strip(), headers.get("Black", "").strip())
    return [name for name in names if name not in _UNKNOWN_NAMES]


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

    def summary_line(self) -> str:
        """One line such as ``read 14 games from 2 files: kept 9, skipped 5 (variant=3, …)``."""
        source = f"{len(self.files)} file" + ("s" if len(self.files) != 1 else "")
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{r}={n}" for r, n in sorted(self.skipped.items()))
        line = f"read {self.games_seen} games from {source}: kept {self.games_kept}"
        line += f", skipped {skipped}" + (f" ({reasons})" if reasons else "")
        return line + "".join(f"; {m}" for m in self.messages)

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

    def __init__(self, header_check: Callable[[dict[str, str]], str | None], moves: bool):
        self._header_check = header_check
        self._want_moves = moves
        self.headers: dict[str, str] = {}
        self.moves: list[str] = []
        self.fen = chess.STARTING_FEN
        self.reason: str | None = None
        self._started = False

    def visit_header(self, tagname: str, tagvalue: str) -> None:
        self.headers[tagname] = tagvalue

    def end_headers(self):
        self.reason = self._header_check(self.headers)
        if self.reason is not None or not self._want_moves:
            return chess.pgn.SKIP
        return None

    def visit_board(self, board: chess.Board) -> None:
        if not self._started:
            self._started = True
            self.fen = board.fen()
            if type(board) is not chess.Board or board.chess960:
                self.reason = self.reason or "variant"

    def begin_variation(self):
        return chess.pgn.SKIP

    def visit_move(self, board: chess.Board, move: chess.Move) -> None:
        if self.reason is not None:
            return
        if not move:
            self.reason = "null_move"
        else:
            self.moves.append(move.uci())

    def handle_error(self, error: Exception) -> None:
        # before the first board python-chess failed on the FEN, afterwards on a move
        self.reason = self.reason or ("illegal_move" if self._started else "bad_fen")

    def result(self) -> _GameVisitor:
        return self


def _game_key(headers: dict[str, str], file_name: str, ordinal: int) -> str:
    site = headers.get("Site", "")
    if site.startswith("http"):
        return site
    if headers.get("GameId"):
        return headers["GameId"]
    return f"{file_name}#{ordinal}"


def _read_visitors(
    files: list[Path],
    header_check: Callable[[dict[str, str]], str | None],
    stats: ReadStats,
    moves: bool,
) -> Iterator[tuple[_GameVisitor, str]]:
    """Yields (visitor, key) per game; truncation and parser crashes are counted in ``stats``."""
    for path in files:
        stats.files.append(str(path))
        with open_text(path) as handle:
            ordinal = 0
            while True:
                try:
                    visitor = chess.pgn.read_game(
                        handle, Visitor=lambda: _GameVisitor(header_check, moves)
                    )
                except TruncatedStreamError as error:
                    stats.games_seen += 1
                    stats.skip("truncated_stream")
                    stats.messages.append(f"{error}; kept the {ordinal} games before the cut")
                    break
                except DataError:
                    raise
                except Exception:  # noqa: BLE001 - a parser crash must not stop the run
                    stats.games_seen += 1
                    stats.skip("parse_error")
                    ordinal += 1
                    continue
                if visitor is None:
                    break
                stats.games_seen += 1
                yield visitor, _game_key(visitor.headers, path.name, ordinal)
                ordinal += 1


def iter_games(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    game_filter: GameFilter | None = None,
    stats: ReadStats | None = None,
    players: set[str] | None = None,
    unselected_reason: str = "not_selected",
) -> Iterator[GameRecord]:
    """Streams the games of ``sources`` that pass ``game_filter``'s game-level checks.

    Player-level checks (``min_games_per_player``) need a whole pass; use
    :func:`jaxstyle.chess.corpus.collect_corpus`. Games with no player in the filter's
    allow-list are counted as ``not_selected``; games with no player in ``players`` (when
    given) as ``unselected_reason``. ``stats`` receives the counts.
    """
    game_filter = game_filter or GameFilter()
    stats = stats if stats is not None else ReadStats()
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

    for visitor, key in _read_visitors(resolve_sources(sources), header_check, stats, True):
        reason = visitor.reason
        if reason is None and len(visitor.moves) < game_filter.min_plies:
            reason = "too_short"
        if reason is not None:
            stats.skip(reason)
            continue
        headers = visitor.headers
        stats.games_kept += 1
        yield GameRecord(
            key=key,
            white=headers.get("White", "?").strip(),
            black=headers.get("Black", "?").strip(),
            white_elo=parse_elo(headers.get("WhiteElo")),
            black_elo=parse_elo(headers.get("BlackElo")),
            time_control=headers.get("TimeControl", ""),
            result=headers.get("Result", "*"),
            fen=visitor.fen,
            moves=tuple(visitor.moves),
        )


def count_player_games(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    game_filter: GameFilter | None = None,
) -> tuple[Counter, ReadStats]:
    """Header-only pass: games per player passing the header checks (movetext skipped).

    Returns the per-player counts and the pass's stats (``games_kept`` stays 0).
    """
    game_filter = game_filter or GameFilter()
    counts: Counter = Counter()
    stats = ReadStats()
    for visitor, _ in _read_visitors(
        resolve_sources(sources), game_filter.header_reason, stats, False
    ):
        if visitor.reason is None:
            counts.update(set(candidate_players(visitor.headers)))
        else:
            stats.skip(visitor.reason)
    return counts, stats
