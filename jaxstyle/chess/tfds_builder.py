"""tensorflow-datasets builder: PGN (Lichess dump or synthetic) → array_record positions.

TensorFlow is not needed: the streaming build (:mod:`jaxstyle.chess.build`, or its Beam
twin :mod:`jaxstyle.chess.beam`) writes ``array_record`` shards in tfds' layout and the data
is read back with ``tfds.data_source`` (random access, numpy dicts). tfds' own download
and generation machinery is not used, so a local build prints no download messages and
leaves no ``incomplete.*`` folders. One example is one position where a kept player is to
move, with the move they played:

=============== ================ ========================================================
feature         dtype, shape     meaning
=============== ================ ========================================================
planes          uint8 [18, 8]    packed Maia-2 planes (:func:`encoding.unpack_planes`)
legal           int16 [n_legal]  vocabulary indices of the legal moves (sorted)
move            int32 []         vocabulary index of the played move
player          int32 []         index into ``metadata["players"]``
game            int32 []         ordinal of the game among all games of the sources
                                 (reading order, skipped games counted)
ply             int32 []         half-move index in the game (0 = first move)
elo             int32 []         the player's Elo (−1 unknown)
opponent_elo    int32 []         the opponent's Elo (−1 unknown)
=============== ================ ========================================================

Splits ``train`` / ``reference`` / ``query`` are per player and by game
(:func:`jaxstyle.chess.corpus.split_keys`); a split without positions is not written and
reading it raises :class:`DataError`. Records are in player-major order, so each player's
positions are one contiguous range; ``metadata["player_offsets"][split]`` lists
``[player, start, count]`` for the balanced batch iterator. The metadata holds per-player
facts and counts only (players, games per player, offsets, the filter, the sources, the
reader's skip counts); nothing in it grows with the number of games.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.dataset_builder import FileReaderBuilder

from jaxstyle.chess import build, encoding
from jaxstyle.chess.corpus import SPLIT_FRACTIONS, SPLITS
from jaxstyle.chess.pgn import GameFilter
from jaxstyle.chess.sources import DataError

DATASET_NAME = build.DATASET_NAME


class ChessPositions(FileReaderBuilder):
    """Positions of per-player chess games (see the module docstring).

    A :class:`FileReaderBuilder` (tfds reads its array_record files; ``tfds.data_source``
    finds it by name) rather than a ``GeneratorBasedBuilder``: the examples are not
    generated one by one through tfds' writer but by the streaming build, in
    :meth:`_download_and_prepare`.

    Build with sources; read a prepared dataset with only ``data_dir``::

        ChessPositions(data_dir=d, sources=["games.pgn.zst"], game_filter=f).download_and_prepare()
        train = tfds.data_source("chess_positions", data_dir=d, split="train")
    """

    VERSION = tfds.core.Version(build.VERSION)
    RELEASE_NOTES = {"1.0.0": "Maia-2 planes, 1880-move vocabulary, per-player 80/10/10 split."}

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        """No checksums file beside the code: the data is local, nothing is downloaded.

        (tfds 4.9.10 otherwise probes the package with ``importlib_resources``, a module it
        does not declare as a dependency.)
        """
        return None

    def __init__(
        self,
        *,
        sources: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
        game_filter: GameFilter | None = None,
        fractions: tuple[float, float, float] = SPLIT_FRACTIONS,
        options: build.BuildOptions | None = None,
        **kwargs,
    ):
        self._sources = sources
        self._game_filter = game_filter or GameFilter()
        self._fractions = fractions
        self._options = options
        self._root = kwargs.get("data_dir")
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        scalar = lambda: tfds.features.Tensor(shape=(), dtype=np.int32)  # noqa: E731
        return tfds.core.DatasetInfo(
            builder=self,
            description="Chess positions with the move played, per player (jaxstyle).",
            features=tfds.features.FeaturesDict(
                {
                    "planes": tfds.features.Tensor(shape=(encoding.NUM_PLANES, 8), dtype=np.uint8),
                    "legal": tfds.features.Tensor(shape=(None,), dtype=np.int16),
                    "move": scalar(),
                    "player": scalar(),
                    "game": scalar(),
                    "ply": scalar(),
                    "elo": scalar(),
                    "opponent_elo": scalar(),
                }
            ),
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(),
        )

    def download_and_prepare(self, *args, **kwargs) -> None:
        """Builds unless prepared, then reads the dataset's info.

        tfds' own ``download_and_prepare`` would stage the build in an ``incomplete.*``
        folder and set up a download manager; the streaming build has its own resumable work
        folder and lock and downloads nothing, so this calls :meth:`_download_and_prepare`
        directly (``args``/``kwargs`` are accepted and ignored).
        """
        if self._root is None:
            raise DataError("ChessPositions needs data_dir=... to build")
        if not build.is_prepared(self._root):
            self._download_and_prepare(None)
        self.info.read_from_directory(self.data_dir)

    def _download_and_prepare(self, dl_manager, download_config=None) -> None:
        """The streaming build (:func:`jaxstyle.chess.build.build`) of the sources."""
        if self._sources is None:
            raise DataError(
                f"no prepared {DATASET_NAME} dataset in {self._root}; "
                "building one needs PGN sources"
            )
        build.build(self._root, self._sources, self._game_filter, self._fractions, self._options)


def build_dataset(
    data_dir: str | os.PathLike,
    sources: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
    game_filter: GameFilter | None = None,
    fractions: tuple[float, float, float] = SPLIT_FRACTIONS,
    options: build.BuildOptions | None = None,
) -> ChessPositions:
    """Builds (or reuses, when already prepared) the dataset under ``data_dir``.

    Raises:
      DataError: for missing sources, sources without games, filters leaving no player, or
        another build of ``data_dir`` running.
    """
    if not is_prepared(data_dir):
        if sources is None:
            raise DataError("building a dataset needs PGN sources")
        build.build(data_dir, sources, game_filter, fractions, options)
    return load_builder(data_dir)


def is_prepared(data_dir: str | os.PathLike) -> bool:
    """Whether ``data_dir`` holds a finished dataset of this builder's version."""
    return build.is_prepared(data_dir)


def load_builder(data_dir: str | os.PathLike) -> ChessPositions:
    """The prepared builder in ``data_dir`` (its ``info.metadata`` holds the card facts).

    Raises:
      DataError: when ``data_dir`` holds no prepared dataset.
    """
    if not is_prepared(data_dir):
        raise DataError(f"no prepared {DATASET_NAME} dataset in {Path(data_dir)}")
    return ChessPositions(data_dir=str(data_dir))


def data_source(data_dir: str | os.PathLike, split: str):
    """Random-access reader of one split via ``tfds.data_source`` (array_record, no TF)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not load_builder(data_dir).info.metadata["positions"][split]:
        raise DataError(
            f"split {split!r} of {Path(data_dir)} is empty "
            "(a player needs at least 3 games for reference and query games)"
        )
    return tfds.data_source(DATASET_NAME, data_dir=str(data_dir), split=split)
