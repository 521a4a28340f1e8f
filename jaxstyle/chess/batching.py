"""NumPy batches from a ``tfds.data_source`` split, with balanced per-player sampling.

A plain-numpy iterator (no grain, no TensorFlow): it draws record indices, fetches them
with the source's ``__getitems__`` and stacks them. Balanced sampling uses the dataset's
``player_offsets`` metadata (each player's positions are one contiguous range), so it
needs no pass over the data.

Batch dict (``B`` = batch size):

============== ======================== ===========================================
key            dtype, shape             meaning
============== ======================== ===========================================
planes         uint8 [B, 18, 8, 8]      0/1 planes (``[B, 18, 8]`` packed if ``unpack=False``)
legal_mask     bool [B, 1880]           legal moves in the vocabulary
move           int32 [B]                played move (vocabulary index)
player         int32 [B]                player id
game, ply      int32 [B]                game id, half-move index
elo            int32 [B]                the player's Elo (−1 unknown)
opponent_elo   int32 [B]                the opponent's Elo (−1 unknown)
============== ======================== ===========================================
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np

from jaxstyle.chess import encoding
from jaxstyle.chess.tfds_builder import data_source, load_builder

_SCALARS = ("move", "player", "game", "ply", "elo", "opponent_elo")


def collate(records: Sequence[dict], unpack: bool = True) -> dict[str, np.ndarray]:
    """Stacks decoded records (dicts of the dataset's features) into a batch dict."""
    planes = np.stack([r["planes"] for r in records])
    batch = {
        "planes": encoding.unpack_planes(planes) if unpack else planes,
        "legal_mask": encoding.ragged_to_mask([r["legal"] for r in records]),
    }
    for key in _SCALARS:
        batch[key] = np.fromiter((r[key] for r in records), dtype=np.int32, count=len(records))
    return batch


def player_ranges(data_dir: str | os.PathLike, split: str) -> np.ndarray:
    """``int64 [n_players_in_split, 3]`` rows ``(player id, first record, count)``."""
    rows = load_builder(data_dir).info.metadata["player_offsets"][split]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


class BalancedBatches:
    """Endless batches that give every player the same chance, however many games they have.

    With ``players_per_batch = P`` each batch holds ``batch_size // P`` positions of each of
    ``P`` distinct players (drawn uniformly without replacement); otherwise every example
    draws its player uniformly. Positions are drawn uniformly within the player's range.

    Args:
      data_dir: directory of the prepared dataset (as given to the builder).
      split: ``train``, ``reference`` or ``query``.
      batch_size: examples per batch.
      players_per_batch: players per batch; must divide ``batch_size``. ``None`` = per example.
      seed: seed of the sampling; the stream of batches is deterministic.
      unpack: return 0/1 planes ``[B, 18, 8, 8]`` (default) or packed ``[B, 18, 8]``.
      players: optional player ids to restrict sampling to.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        split: str,
        batch_size: int,
        players_per_batch: int | None = None,
        seed: int = 0,
        unpack: bool = True,
        players: Sequence[int] | None = None,
    ):
        if players_per_batch is not None and (
            players_per_batch < 1 or batch_size % players_per_batch
        ):
            raise ValueError(
                f"players_per_batch={players_per_batch} must divide batch_size={batch_size}"
            )
        self.source = data_source(data_dir, split)
        ranges = player_ranges(data_dir, split)
        if players is not None:
            ranges = ranges[np.isin(ranges[:, 0], np.asarray(players))]
        if not len(ranges):
            raise ValueError(f"split {split!r} has no positions for the requested players")
        if players_per_batch is not None and players_per_batch > len(ranges):
            raise ValueError(
                f"players_per_batch={players_per_batch} > {len(ranges)} players in {split!r}"
            )
        self.ranges = ranges
        self.batch_size = batch_size
        self.players_per_batch = players_per_batch
        self.unpack = unpack
        self._rng = np.random.default_rng(seed)

    def sample_indices(self) -> np.ndarray:
        """``int64 [batch_size]`` record indices of the next batch."""
        rng = self._rng
        if self.players_per_batch is None:
            rows = rng.integers(len(self.ranges), size=self.batch_size)
        else:
            chosen = rng.choice(len(self.ranges), size=self.players_per_batch, replace=False)
            rows = np.repeat(chosen, self.batch_size // self.players_per_batch)
        starts, counts = self.ranges[rows, 1], self.ranges[rows, 2]
        return starts + (rng.random(len(rows)) * counts).astype(np.int64)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        indices = self.sample_indices()
        return collate(self.source.__getitems__(indices.tolist()), self.unpack)


def iterate_split(
    data_dir: str | os.PathLike, split: str, batch_size: int, unpack: bool = True
) -> Iterator[dict[str, np.ndarray]]:
    """Each record of ``split`` once, in stored (player-major) order; the last batch may be short.

    Yields batch dicts as documented in the module docstring.
    """
    source = data_source(data_dir, split)
    for start in range(0, len(source), batch_size):
        indices = list(range(start, min(start + batch_size, len(source))))
        yield collate(source.__getitems__(indices), unpack)
