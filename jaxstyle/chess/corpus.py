"""Per-player game lists with a deterministic 80/10/10 train/reference/query split.

:func:`split_keys` is the split used everywhere. :class:`Corpus` / :func:`collect_corpus`
hold every kept game in memory: an analysis tool for small inputs (a few thousand games).
Datasets are built by the streaming build (:mod:`jaxstyle.chess.build`), which never holds
the games; its rules (header pass, min-games check after parsing, duplicates) are these.

Two passes over the sources: a header-only pass counts each player's eligible games
(movetext skipped, cheap even for a Lichess dump), a full pass parses only games of the
players that qualify. A player whose count falls under the minimum because some of their
games turn out illegal in the full pass is dropped, and those games are counted under
``min_games``.

The split is by game and per player (as in behavioural stylometry, McIlroy-Young et al.
2021): a player's games are ordered by ``blake2b(player, game key)`` and cut at 80 % and
90 %. The assignment depends only on the player and the game, not on file order, and a
player with at least 3 games gets at least one reference and one query game.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import zstandard

from jaxstyle.chess.build_plan import select_players
from jaxstyle.chess.pgn import (
    GameFilter,
    GameRecord,
    ReadStats,
    count_player_games,
    iter_games,
)
from jaxstyle.chess.sources import DataError, describe_sources, resolve_sources

SPLITS = ("train", "reference", "query")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def split_keys(
    player: str, keys: Iterable[str], fractions: tuple[float, float, float] = SPLIT_FRACTIONS
) -> dict[str, list[str]]:
    """Assigns a player's game keys to ``SPLITS`` deterministically (see module docstring)."""
    keys = sorted(
        set(keys), key=lambda k: hashlib.blake2b(f"{player}\0{k}".encode(), digest_size=8).digest()
    )
    n = len(keys)
    n_ref = round(n * fractions[1])
    n_query = round(n * fractions[2])
    if n >= 3:
        n_ref, n_query = max(1, n_ref), max(1, n_query)
    n_train = n - n_ref - n_query
    return {
        "train": keys[:n_train],
        "reference": keys[n_train : n_train + n_ref],
        "query": keys[n_train + n_ref :],
    }


@dataclasses.dataclass
class Corpus:
    """Kept games, players and their split.

    Attributes:
      games: kept games; a game's index in this list is its ``game`` id in the dataset.
      players: kept player names, sorted; a name's index is its ``player`` id.
      splits: ``splits[split][player]`` = sorted game indices of that player in that split.
      stats: counts of the full pass (kept / skipped by reason).
      game_filter: the filter used.
      sources: the files read.
    """

    games: list[GameRecord]
    players: list[str]
    splits: dict[str, dict[str, list[int]]]
    stats: ReadStats
    game_filter: GameFilter
    sources: list[str]

    def games_per_player(self) -> dict[str, int]:
        """Kept games of each player over all splits."""
        return {p: sum(len(self.splits[s].get(p, ())) for s in SPLITS) for p in self.players}

    def player_positions(self, split: str, player: str) -> int:
        """Number of positions (the player's own moves) of ``player`` in ``split``."""
        total = 0
        for index in self.splits[split].get(player, ()):
            game = self.games[index]
            total += len(game.plies_of(game.color_of(player)))
        return total

    def num_positions(self, split: str) -> int:
        return sum(self.player_positions(split, p) for p in self.players)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the corpus as zstd-compressed JSON (atomically), so a dataset build that is
        interrupted after the (long) read can restart without reading the sources again."""
        data = {
            "version": 1,
            "players": self.players,
            "splits": self.splits,
            "stats": self.stats.as_dict(),
            "filter": self.game_filter.as_dict(),
            "sources": self.sources,
            "games": [
                [g.key, g.white, g.black, g.white_elo, g.black_elo, g.time_control, g.result]
                + [g.fen, " ".join(g.moves)]
                for g in self.games
            ],
        }
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(zstandard.ZstdCompressor(level=3).compress(json.dumps(data).encode()))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Corpus:
        """Reads a corpus written by :meth:`save`."""
        data = json.loads(zstandard.ZstdDecompressor().decompress(Path(path).read_bytes()))
        stats = data["stats"]
        return cls(
            games=[
                GameRecord(*row[:7], fen=row[7], moves=tuple(row[8].split()))
                for row in data["games"]
            ],
            players=data["players"],
            splits=data["splits"],
            stats=ReadStats(
                files=stats["files"],
                games_seen=stats["games_seen"],
                games_kept=stats["games_kept"],
                skipped=Counter(stats["skipped"]),
                messages=stats["messages"],
            ),
            game_filter=GameFilter.from_dict(data["filter"]),
            sources=data["sources"],
        )


def collect_corpus(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    game_filter: GameFilter | None = None,
    fractions: tuple[float, float, float] = SPLIT_FRACTIONS,
) -> Corpus:
    """Reads, filters and splits ``sources`` into a :class:`Corpus`.

    Raises:
      DataError: when a source is missing, the sources hold no games, or the filters leave
        no player; the message carries the skip counts.
    """
    game_filter = game_filter or GameFilter()
    files = resolve_sources(sources)
    where = describe_sources(files)
    counts, header_stats = count_player_games(files, game_filter)
    if header_stats.games_seen == 0 and not header_stats.skipped:
        raise DataError(f"no games found in {where}")
    selected = set(select_players(counts, game_filter))
    if not selected:
        raise DataError(
            f"filters left no players in {where}: {len(counts)} players had eligible games, "
            f"none with >= {game_filter.min_games_per_player} games"
            f"{' in the allow-list' if game_filter.players else ''}; "
            f"header pass: {header_stats.summary_line('passed the headers')}"
        )

    stats = ReadStats()
    games: list[GameRecord] = []
    owners: list[list[str]] = []
    seen: set[str] = set()
    for game in iter_games(files, game_filter, stats, selected, "min_games"):
        if game.key in seen:  # the same game twice (e.g. overlapping dumps)
            stats.games_kept -= 1
            stats.skip("duplicate")
            continue
        seen.add(game.key)
        games.append(game)
        owners.append([p for p in (game.white, game.black) if p in selected])

    per_player: Counter = Counter(p for owner in owners for p in set(owner))
    keep = {p for p, n in per_player.items() if n >= game_filter.min_games_per_player}
    kept_games: list[GameRecord] = []
    player_games: dict[str, list[int]] = {p: [] for p in keep}
    for game, owner in zip(games, owners):
        mine = sorted({p for p in owner if p in keep})
        if not mine:
            stats.games_kept -= 1
            stats.skip("min_games")
            continue
        for p in mine:
            player_games[p].append(len(kept_games))
        kept_games.append(game)
    if not keep:
        raise DataError(f"filters left no players in {where}: {stats.summary_line()}")

    players = sorted(keep)
    splits: dict[str, dict[str, list[int]]] = {s: {} for s in SPLITS}
    for p in players:
        index_of = {kept_games[i].key: i for i in player_games[p]}
        for split, keys in split_keys(p, index_of, fractions).items():
            splits[split][p] = sorted(index_of[k] for k in keys)
    return Corpus(
        games=kept_games,
        players=players,
        splits=splits,
        stats=stats,
        game_filter=game_filter,
        sources=[str(f) for f in files],
    )
