"""The header pass of the streaming build and the plan it leaves: players and buckets.

The header pass reads only the tag pairs of every game (movetext is cut, not parsed)
and counts each player's games that pass the filter. With a worker pool the main process
only cuts the stream into games and sends each chunk's header bytes to the workers, which
parse and check them and send back per-chunk counts (the sums do not depend on the order).
The plan then fixes, before any move is parsed:

* the selected players (``min_games_per_player``, allow-list, ``max_players``), sorted by
  name — a player's index in that list is its provisional id;
* *buckets*: consecutive runs of players whose header-pass games add up to about
  ``games_per_bucket`` player-games. A bucket is the unit of the second stage (all of a
  player's positions meet there, are split 80/10/10 and written as one shard per split), so
  its size, not the input's, bounds the memory of that stage. The number of buckets grows
  with the input.

Only per-player numbers are held (names, counts, bucket of each player): memory grows
with the number of players, not with the number of games.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from jaxstyle.chess.pgn import ReadStats, candidate_players, selection_check
from jaxstyle.chess.pgn_filters import GameFilter
from jaxstyle.chess.pgn_split import StreamDamage, iter_file_games, parse_headers
from jaxstyle.chess.sources import DataError, describe_sources


@dataclasses.dataclass
class Plan:
    """What the header pass decided (JSON-able; saved so a resumed build skips the pass).

    Attributes:
      sources: the files, in build order.
      game_filter: the filter.
      fractions: train/reference/query fractions.
      players: selected player names, sorted; index = provisional player id.
      header_games: header-pass games of each selected player (same order).
      bucket_starts: first player id of each bucket (``int``, ascending, starts at 0).
      header_stats: counts of the header pass.
      games_total: games seen by the header pass (all of them, kept or not).
      file_games: whole games cut from each file (the first game of file ``i`` has global
        ordinal ``sum(file_games[:i])``).
    """

    sources: list[str]
    game_filter: GameFilter
    fractions: tuple[float, float, float]
    players: list[str]
    header_games: list[int]
    bucket_starts: list[int]
    header_stats: ReadStats
    games_total: int
    file_games: list[int]

    @property
    def num_buckets(self) -> int:
        return len(self.bucket_starts)

    def bucket_of(self) -> np.ndarray:
        """``int32 [num_players]`` bucket of every player id."""
        ids = np.arange(len(self.players))
        return (np.searchsorted(self.bucket_starts, ids, side="right") - 1).astype(np.int32)

    def save(self, path: Path) -> None:
        data = dataclasses.asdict(self)
        data["game_filter"] = self.game_filter.as_dict()
        data["header_stats"] = self.header_stats.as_dict()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Plan:
        data = json.loads(path.read_text())
        data["game_filter"] = GameFilter.from_dict(data["game_filter"])
        data["header_stats"] = stats_from_dict(data["header_stats"])
        data["fractions"] = tuple(data["fractions"])
        return cls(**data)


def stats_from_dict(data: dict) -> ReadStats:
    """Inverse of :meth:`ReadStats.as_dict`."""
    return ReadStats(
        files=list(data["files"]),
        games_seen=data["games_seen"],
        games_kept=data["games_kept"],
        skipped=Counter(data["skipped"]),
        messages=list(data["messages"]),
    )


HEADER_CHUNK_GAMES = 2_000
"""Games per header-pass task sent to a worker."""


def ordered_results(pool, fn: Callable, tasks: Iterable, window: int) -> Iterator:
    """``fn(task)`` of every task on ``pool``, in task order, with at most ``window`` tasks
    submitted ahead of the results (``Pool.imap`` would read all tasks ahead: unbounded
    memory when the workers are slower than the reader)."""
    pending: collections.deque = collections.deque()
    for task in tasks:
        pending.append(pool.apply_async(fn, (task,)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _header_chunk(task: tuple[dict, list[bytes]]) -> tuple[Counter, Counter]:
    """Worker side: per-player counts and ``{"kept" | reason: games}`` of header bytes."""
    filter_dict, headers_list = task
    check = selection_check(GameFilter.from_dict(filter_dict))
    counts: Counter = Counter()
    outcome: Counter = Counter()
    for data in headers_list:
        headers = parse_headers(data)
        reason = check(headers)
        if reason is None:
            counts.update(set(candidate_players(headers)))
        outcome[reason or ""] += 1
    return counts, outcome


def _header_batches(path: Path, damage: list[StreamDamage]) -> Iterator[list[bytes]]:
    batch = []
    for game in iter_file_games(path, damage):
        batch.append(game.data[: game.header_end])
        if len(batch) == HEADER_CHUNK_GAMES:
            yield batch
            batch = []
    if batch:
        yield batch


def header_pass(
    files: Sequence[Path], game_filter: GameFilter, progress=None, pool=None, workers: int = 1
) -> tuple[Counter, ReadStats, list[int]]:
    """Games per player whose headers pass ``game_filter`` (and its allow-list), the pass'
    counts, and the whole games cut from each file.

    ``progress`` (optional) is called with the number of games read so far, every 10,000
    (every chunk with a pool). ``pool``: a process pool of ``workers`` processes that
    parses the headers (the result is the same).
    """
    if pool is not None:
        return _parallel_header_pass(files, game_filter, progress, pool, workers)
    check = selection_check(game_filter)
    counts: Counter = Counter()
    stats = ReadStats()
    file_games = []
    for path in files:
        stats.files.append(str(path))
        damage: list[StreamDamage] = []
        before = stats.games_seen
        for game in iter_file_games(path, damage):
            stats.games_seen += 1
            if progress is not None and stats.games_seen % 10_000 == 0:
                progress(stats.games_seen)
            headers = game.headers()
            reason = check(headers)
            if reason is None:
                stats.games_kept += 1
                counts.update(set(candidate_players(headers)))
            else:
                stats.skip(reason)
        file_games.append(stats.games_seen - before)
        for item in damage:
            stats.add_damage(item)
    return counts, stats, file_games


def _parallel_header_pass(files, game_filter, progress, pool, workers):
    counts: Counter = Counter()
    stats = ReadStats()
    file_games = []
    filter_dict = game_filter.as_dict()
    for path in files:
        stats.files.append(str(path))
        damage: list[StreamDamage] = []
        before = stats.games_seen
        tasks = ((filter_dict, batch) for batch in _header_batches(path, damage))
        for chunk_counts, outcome in ordered_results(pool, _header_chunk, tasks, 2 * workers):
            counts.update(chunk_counts)
            stats.games_seen += sum(outcome.values())
            stats.games_kept += outcome.pop("", 0)
            stats.skipped.update(outcome)
            if progress is not None:
                progress(stats.games_seen)
        file_games.append(stats.games_seen - before)
        for item in damage:
            stats.add_damage(item)
    return counts, stats, file_games


def select_players(counts: Counter, game_filter: GameFilter) -> list[str]:
    """Names with at least ``min_games_per_player`` games (allow-list, ``max_players``), sorted."""
    allowed = set(game_filter.players) if game_filter.players else None
    eligible = [
        (n, p)
        for p, n in counts.items()
        if n >= game_filter.min_games_per_player and (allowed is None or p in allowed)
    ]
    eligible.sort(key=lambda item: (-item[0], item[1]))
    if game_filter.max_players is not None:
        eligible = eligible[: game_filter.max_players]
    return sorted(p for _, p in eligible)


def bucket_starts(header_games: Sequence[int], games_per_bucket: int) -> list[int]:
    """First player id of each bucket: consecutive players, about ``games_per_bucket`` each."""
    starts, total = [0], 0
    for player_id, games in enumerate(header_games):
        if total and total + games > games_per_bucket:
            starts.append(player_id)
            total = 0
        total += games
    return starts


def make_plan(
    files: Sequence[Path],
    game_filter: GameFilter,
    fractions: tuple[float, float, float],
    games_per_bucket: int,
    progress=None,
    pool=None,
    workers: int = 1,
) -> Plan:
    """Runs the header pass (on ``pool`` when given, see :func:`header_pass`) and selects
    players and buckets.

    Raises:
      DataError: when the sources hold no games or the filters leave no player (the message
        quotes the header pass' counts).
    """
    counts, stats, file_games = header_pass(files, game_filter, progress, pool, workers)
    where = describe_sources(files)
    if stats.games_seen == 0 or stats.games_seen == sum(
        stats.skipped[r] for r in ("truncated_stream", "corrupt_stream")
    ):
        detail = "".join(f"; {m}" for m in stats.messages)
        raise DataError(f"no games found in {where}{detail}")
    players = select_players(counts, game_filter)
    if not players:
        allow = " in the allow-list" if game_filter.players else ""
        raise DataError(
            f"filters left no players in {where}: {len(counts)} players had eligible games, "
            f"none with >= {game_filter.min_games_per_player} games{allow}; "
            f"header pass: {stats.summary_line('passed the headers')}"
        )
    header_games = [counts[p] for p in players]
    return Plan(
        sources=[str(f) for f in files],
        game_filter=game_filter,
        fractions=tuple(fractions),
        players=players,
        header_games=header_games,
        bucket_starts=bucket_starts(header_games, games_per_bucket),
        header_stats=stats,
        games_total=stats.games_seen,
        file_games=file_games,
    )
