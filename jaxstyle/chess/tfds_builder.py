"""tensorflow-datasets builder: PGN (Lichess dump or synthetic) → array_record positions.

TensorFlow is not needed: the builder writes ``array_record`` shards and the data is read
back with ``tfds.data_source`` (random access, numpy dicts). One example is one position
where a kept player is to move, with the move they played:

=============== ================ ========================================================
feature         dtype, shape     meaning
=============== ================ ========================================================
planes          uint8 [18, 8]    packed Maia-2 planes (:func:`encoding.unpack_planes`)
legal           int16 [n_legal]  vocabulary indices of the legal moves (sorted)
move            int32 []         vocabulary index of the played move
player          int32 []         index into ``metadata["players"]``
game            int32 []         index into ``metadata["games"]`` (game keys)
ply             int32 []         half-move index in the game (0 = first move)
elo             int32 []         the player's Elo (−1 unknown)
opponent_elo    int32 []         the opponent's Elo (−1 unknown)
=============== ================ ========================================================

Splits ``train`` / ``reference`` / ``query`` are per player and by game
(:mod:`jaxstyle.chess.corpus`); a split without positions is not written (tfds cannot
write empty splits) and reading it raises :class:`DataError`. Records are written in
player-major order (shuffling disabled), so each player's positions are one contiguous range;
``metadata["player_offsets"][split]`` lists ``[player, start, count]`` for the balanced
batch iterator. The metadata also keeps the filter, the sources and the reader's
skip counts for the dataset card.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import chess
import numpy as np
import tensorflow_datasets as tfds

from jaxstyle.chess import encoding
from jaxstyle.chess.corpus import SPLIT_FRACTIONS, SPLITS, Corpus, collect_corpus
from jaxstyle.chess.pgn import GameFilter
from jaxstyle.chess.sources import DataError, resolve_sources

DATASET_NAME = "chess_positions"


class ChessPositions(tfds.core.GeneratorBasedBuilder):
    """Positions of per-player chess games (see the module docstring).

    Build with sources; read a prepared dataset with only ``data_dir``::

        ChessPositions(data_dir=d, sources=["games.pgn.zst"], game_filter=f).download_and_prepare()
        train = tfds.data_source("chess_positions", data_dir=d, split="train")
    """

    VERSION = tfds.core.Version("1.0.0")
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
        corpus: Corpus | None = None,
        **kwargs,
    ):
        self._sources = sources
        self._game_filter = game_filter or GameFilter()
        self._fractions = fractions
        self.corpus = corpus
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

    def _split_generators(self, dl_manager):
        if self.corpus is None:
            if self._sources is None:
                raise DataError(
                    f"no prepared {DATASET_NAME} dataset in {self.data_dir}; "
                    "building one needs PGN sources or a corpus"
                )
            self.corpus = collect_corpus(self._sources, self._game_filter, self._fractions)
        corpus = self.corpus
        metadata = corpus_metadata(corpus)
        self.info.metadata.update(metadata)
        # tfds cannot write an empty split (players with < 3 games have no reference/query)
        return {
            split: self._generate_examples(corpus, split)
            for split in SPLITS
            if metadata["positions"][split]
        }

    def _generate_examples(self, corpus: Corpus, split: str) -> Iterator[tuple[int, dict]]:
        key = 0
        for player_id, player in enumerate(corpus.players):
            for game_id in corpus.splits[split].get(player, ()):
                for example in position_examples(corpus, player_id, game_id):
                    yield key, example
                    key += 1


def position_examples(corpus: Corpus, player_id: int, game_id: int) -> Iterator[dict]:
    """The examples of one player in one game: every position where they are to move."""
    game = corpus.games[game_id]
    color = game.color_of(corpus.players[player_id])
    elo, opponent_elo = game.elo_of(color), game.elo_of(not color)
    board = chess.Board(game.fen)
    for ply, uci in enumerate(game.moves):
        move = chess.Move.from_uci(uci)
        if board.turn == color:
            yield {
                "planes": encoding.encode_board(board),
                "legal": encoding.legal_move_indices(board),
                "move": encoding.move_to_index(board, move),
                "player": player_id,
                "game": game_id,
                "ply": ply,
                "elo": elo,
                "opponent_elo": opponent_elo,
            }
        board.push(move)


def corpus_metadata(corpus: Corpus) -> dict:
    """JSON-able metadata of a corpus: players, game keys, offsets, positions, filter, skips."""
    offsets: dict[str, list[list[int]]] = {}
    positions: dict[str, int] = {}
    for split in SPLITS:
        start, rows = 0, []
        for player_id, player in enumerate(corpus.players):
            count = corpus.player_positions(split, player)
            if count:
                rows.append([player_id, start, count])
            start += count
        offsets[split] = rows
        positions[split] = start
    return {
        "encoding": {
            "layout": "maia2",
            "planes": encoding.NUM_PLANES,
            "vocab_size": encoding.VOCAB_SIZE,
        },
        "players": list(corpus.players),
        "games": [g.key for g in corpus.games],
        "games_per_player": corpus.games_per_player(),
        "split_games": {s: {p: len(ids) for p, ids in corpus.splits[s].items()} for s in SPLITS},
        "player_offsets": offsets,
        "positions": positions,
        "filter": corpus.game_filter.as_dict(),
        "sources": list(corpus.sources),
        "read_stats": corpus.stats.as_dict(),
        "read_summary": corpus.stats.summary_line(),
    }


def build_dataset(
    data_dir: str | os.PathLike,
    sources: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
    game_filter: GameFilter | None = None,
    fractions: tuple[float, float, float] = SPLIT_FRACTIONS,
    corpus: Corpus | None = None,
) -> ChessPositions:
    """Builds (or reuses, when already prepared) the dataset under ``data_dir``.

    The games come from ``corpus`` when given (e.g. :meth:`Corpus.load` of a cached read),
    else from reading ``sources`` with ``game_filter``.

    Raises:
      DataError: for missing sources, sources without games, or filters leaving no player.
    """
    if not is_prepared(data_dir) and corpus is None:
        if sources is None:
            raise DataError("building a dataset needs PGN sources or a corpus")
        sources = resolve_sources(sources)  # fail before tfds creates any folder
    builder = ChessPositions(
        data_dir=str(data_dir),
        sources=sources,
        game_filter=game_filter,
        fractions=fractions,
        corpus=corpus,
    )
    builder.download_and_prepare()
    return builder


def is_prepared(data_dir: str | os.PathLike) -> bool:
    """Whether ``data_dir`` holds a finished dataset of this builder's version."""
    folder = Path(data_dir) / DATASET_NAME / str(ChessPositions.VERSION)
    return (folder / "dataset_info.json").is_file()


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
