"""Stage B of the streaming build: one bucket's spill entries → one array_record shard per split.

All of a bucket's players' games meet here (a player belongs to exactly one bucket), so
this is where a player's games are deduplicated (same key twice: the first read is kept),
checked against ``min_games_per_player`` after parsing, split 80/10/10 with
:func:`jaxstyle.chess.corpus.split_keys`, and written in player-major order: players by id,
then games in reading order, then plies. The result does not depend on the order in which
entries arrive (local spill files or a Beam ``GroupByKey``).

Game-level counts need one owner per game: the bucket of the smallest kept player id of the
game counts it as kept; a game none of whose players is kept is counted under ``min_games``
by the bucket of its smallest selected player id.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from array_record.python import array_record_module

from jaxstyle.chess import records
from jaxstyle.chess.build_encode import SpillEntry
from jaxstyle.chess.corpus import SPLITS, split_keys


@dataclasses.dataclass
class BucketResult:
    """What a bucket wrote (JSON-able; its file marks the bucket as done).

    Attributes:
      bucket: the bucket index.
      records: records written per split.
      num_bytes: shard bytes per split.
      player_positions: per split, ``[final player id, positions]`` rows in id order.
      games_per_player: kept games of each kept player (by name).
      split_games: per split, games of each player (by name).
      games_kept: games this bucket owns (see the module docstring).
      skipped: ``min_games`` / ``duplicate`` games this bucket owns.
    """

    bucket: int
    records: dict[str, int]
    num_bytes: dict[str, int]
    player_positions: dict[str, list[list[int]]]
    games_per_player: dict[str, int]
    split_games: dict[str, dict[str, int]]
    games_kept: int
    skipped: dict[str, int]

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> BucketResult:
        return cls(**json.loads(path.read_text()))


def shard_path(shard_dir: Path, split: str, bucket: int) -> Path:
    return shard_dir / f"{split}-{bucket:06d}.array_record"


def _owner(ids: Iterable[int], allowed: np.ndarray) -> int:
    """Smallest id of ``ids`` (``-1`` ignored) with ``allowed[id]``; -1 when none."""
    found = [i for i in ids if i >= 0 and allowed[i]]
    return min(found) if found else -1


def write_bucket(
    bucket: int,
    entries: Iterable[SpillEntry],
    *,
    players: list[str],
    final_ids: np.ndarray,
    fractions: tuple[float, float, float],
    shard_dir: Path,
) -> BucketResult:
    """Writes the shards of one bucket and returns what they hold.

    Args:
      bucket: bucket index (names the shard files).
      entries: the bucket's spill entries, any order.
      players: provisional player names (index = provisional id).
      final_ids: ``int64 [num_players]`` final id of each provisional id, ``-1`` = dropped.
      fractions: split fractions.
      shard_dir: folder of the bucket shards (``<split>-<bucket>.array_record``).
    """
    kept = final_ids >= 0
    selected = np.ones(len(final_ids), dtype=bool)
    per_player: dict[int, dict[str, SpillEntry]] = {}
    skipped: Counter = Counter()
    games_kept = 0
    for entry in sorted(entries, key=lambda e: (e.player, e.ordinal)):
        pair = (entry.player, entry.opponent)
        games = per_player.setdefault(entry.player, {})
        if not kept[entry.player]:
            if _owner(pair, kept) < 0 and _owner(pair, selected) == entry.player:
                skipped["min_games"] += 1
            continue
        if entry.key in games:
            if _owner(pair, kept) == entry.player:
                skipped["duplicate"] += 1
            continue
        games[entry.key] = entry
        if _owner(pair, kept) == entry.player:
            games_kept += 1

    result = BucketResult(
        bucket=bucket,
        records={s: 0 for s in SPLITS},
        num_bytes={s: 0 for s in SPLITS},
        player_positions={s: [] for s in SPLITS},
        games_per_player={},
        split_games={s: {} for s in SPLITS},
        games_kept=games_kept,
        skipped=dict(skipped),
    )
    by_split: dict[str, list[tuple[int, list[SpillEntry]]]] = {s: [] for s in SPLITS}
    for pid in sorted(per_player):
        games = per_player[pid]
        if not kept[pid] or not games:
            continue
        name = players[pid]
        result.games_per_player[name] = len(games)
        for split, keys in split_keys(name, games, fractions).items():
            chosen = sorted((games[k] for k in keys), key=lambda e: e.ordinal)
            result.split_games[split][name] = len(chosen)
            by_split[split].append((int(final_ids[pid]), chosen))
    for split in SPLITS:
        _write_split(result, split, by_split[split], shard_path(shard_dir, split, bucket))
    return result


def _write_split(result: BucketResult, split: str, rows, path: Path) -> None:
    count = sum(len(e.bodies) for _, chosen in rows for e in chosen)
    if not count:
        return
    tmp = path.with_name(path.name + ".tmp")
    writer = array_record_module.ArrayRecordWriter(os.fspath(tmp), "group_size:1")
    size = 0
    for final_id, chosen in rows:
        positions = 0
        for entry in chosen:
            for body in entry.bodies:
                record = records.full_record(final_id, entry.ordinal, body)
                writer.write(record)
                size += len(record)
                positions += 1
        if positions:
            result.player_positions[split].append([final_id, positions])
    writer.close()
    os.replace(tmp, path)
    result.records[split] = count
    result.num_bytes[split] = size
