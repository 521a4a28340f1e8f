"""Which games and players to keep: Lichess-style header filters.

Pure functions of a game's PGN headers (no move parsing), shared by the reader
(:mod:`jaxstyle.chess.pgn`), the header pass and the streaming build
(:mod:`jaxstyle.chess.build`). Header-level skip reasons, in the order they are checked:

================ ============================================================
variant          ``Variant`` header the encoding cannot represent (crazyhouse, atomic, …;
                 with ``standard_only`` also Chess960)
custom_start     a ``FEN`` header other than the start position (``standard_start_only``)
unrated          not rated (``Event`` lacks "rated"; with ``rated_only``)
time_control     time-control class not in ``time_controls``
elo              a player's Elo missing or below ``min_elo``
unknown_player   neither player has a real name (``?``, ``NN``, ``N.N.``, ``Anonymous``, …)
================ ============================================================
"""

from __future__ import annotations

import dataclasses

import chess

TIME_CONTROL_CLASSES = ("ultrabullet", "bullet", "blitz", "rapid", "classical", "correspondence")
_STANDARD_VARIANTS = {"", "standard", "chess", "classical", "normal", "from position"}
_BOARD_VARIANTS = {"chess960", "chess 960", "fischerandom", "fischer random", "960"}
"""Variants played on a standard board with standard pieces (kept when ``standard_only=False``)."""
ANONYMOUS_NAMES = frozenset(
    {"", "?", "-", "??", "nn", "n.n.", "n.n", "n n", "anonymous", "anon", "unknown", "noname"}
)
"""Lower-cased names that stand for "no known player" (Lichess ``?``, FIDE ``NN``, …)."""


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
    for limit, name in ((30, "ultrabullet"), (180, "bullet"), (480, "blitz"), (1500, "rapid")):
        if seconds < limit:
            return name
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


def is_anonymous(name: str) -> bool:
    """Whether a ``White``/``Black`` value names nobody in particular."""
    return name.strip().lower() in ANONYMOUS_NAMES


def candidate_players(headers: dict[str, str]) -> list[str]:
    """Named players of a game (``White`` then ``Black``), anonymous names dropped."""
    names = (headers.get("White", "").strip(), headers.get("Black", "").strip())
    return [name for name in names if not is_anonymous(name)]


@dataclasses.dataclass(frozen=True)
class GameFilter:
    """Which games and players to keep.

    Attributes:
      standard_only: skip every non-standard ``Variant``. With ``False`` Chess960 games are
        kept too (same board and pieces; castling is the king-takes-rook move); variants with
        other rules (crazyhouse, atomic, …) are always skipped, the encoding cannot hold them.
      standard_start_only: skip games with a ``FEN`` header other than the start position
        (every Lichess study game has one).
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

    def allows_variant(self, variant: str) -> bool:
        """Whether a ``Variant`` header value (any case) passes the filter."""
        variant = variant.strip().lower()
        if variant in _STANDARD_VARIANTS:
            return True
        return not self.standard_only and variant in _BOARD_VARIANTS

    def header_reason(self, headers: dict[str, str]) -> str | None:
        """First header-level skip reason of a game, or None when its headers pass."""
        if not self.allows_variant(headers.get("Variant", "")):
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
