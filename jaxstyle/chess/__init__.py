"""Chess data pipeline for style vectors: encodings, PGN/Lichess reader, tfds dataset,
synthetic players with known styles.

Modules, one job each:

- :mod:`~jaxstyle.chess.encoding` — board → Maia-2 planes, 1880-move vocabulary, legal mask
- :mod:`~jaxstyle.chess.sources` — ``.pgn`` / ``.pgn.zst`` byte and text streams; :class:`DataError`
- :mod:`~jaxstyle.chess.pgn_filters` — Lichess header filters (:class:`GameFilter`)
- :mod:`~jaxstyle.chess.pgn_split` — cutting a PGN stream into whole games and chunks
- :mod:`~jaxstyle.chess.pgn` — game reader, skip counts by reason
- :mod:`~jaxstyle.chess.corpus` — per-player 80/10/10 split; in-memory corpus for small data
- :mod:`~jaxstyle.chess.records` — a game's positions → serialized records, vectorised
- :mod:`~jaxstyle.chess.build` — streaming, parallel, resumable dataset build (with
  ``build_plan`` / ``build_encode`` / ``build_shards`` for its stages);
  :mod:`~jaxstyle.chess.beam` runs it on Apache Beam (the ``[beam]`` extra)
- :mod:`~jaxstyle.chess.replay` — scale test input: real games under many players
- :mod:`~jaxstyle.chess.evaluator` — move loss Δ (built-in, or Stockfish/UCI)
- :mod:`~jaxstyle.chess.style_features` — readable per-move style features φ
- :mod:`~jaxstyle.chess.synthetic` — synthetic players, one name for
  :mod:`~jaxstyle.chess.players` (who they are), :mod:`~jaxstyle.chess.play` (how they move)
  and :mod:`~jaxstyle.chess.generation` (parallel, resumable game generation)
- :mod:`~jaxstyle.chess.balance` — does the players' style show next to their skill?
- :mod:`~jaxstyle.chess.tfds_builder` — array_record dataset, read via ``tfds.data_source``
- :mod:`~jaxstyle.chess.batching` — balanced per-player numpy batches
- :mod:`~jaxstyle.chess.card` — dataset card
- :mod:`~jaxstyle.chess.make_dataset` — command line

The tfds-based modules (``tfds_builder``, ``batching``, ``card``) import
tensorflow-datasets (about 1 s) and are loaded on first attribute access.
"""

from __future__ import annotations

import importlib

from jaxstyle.chess.corpus import SPLITS, Corpus, collect_corpus, split_keys
from jaxstyle.chess.encoding import (
    MOVE_VOCAB,
    NUM_PLANES,
    VOCAB_SIZE,
    board_planes,
    encode_board,
    index_to_move,
    legal_mask,
    legal_move_indices,
    move_to_index,
    ragged_to_mask,
    unpack_planes,
)
from jaxstyle.chess.evaluator import FastEvaluator, StockfishEvaluator, analyse_moves
from jaxstyle.chess.pgn import GameFilter, GameRecord, ReadStats, iter_games, time_control_class
from jaxstyle.chess.sources import DataError, TruncatedStreamError, open_text
from jaxstyle.chess.style_features import FEATURES, move_features
from jaxstyle.chess.synthetic import (
    ARCHETYPES,
    GeneratorConfig,
    PlayerStyle,
    generate,
    load_ground_truth,
    make_players,
    play_game,
)

_LAZY = {
    "ChessPositions": "jaxstyle.chess.tfds_builder",
    "build_dataset": "jaxstyle.chess.tfds_builder",
    "data_source": "jaxstyle.chess.tfds_builder",
    "load_builder": "jaxstyle.chess.tfds_builder",
    "BalancedBatches": "jaxstyle.chess.batching",
    "iterate_split": "jaxstyle.chess.batching",
    "dataset_card": "jaxstyle.chess.card",
    "write_card": "jaxstyle.chess.card",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jaxstyle.chess' has no attribute {name!r}")


__all__ = [
    "ARCHETYPES",
    "FEATURES",
    "MOVE_VOCAB",
    "NUM_PLANES",
    "SPLITS",
    "VOCAB_SIZE",
    "BalancedBatches",
    "ChessPositions",
    "Corpus",
    "DataError",
    "FastEvaluator",
    "GameFilter",
    "GameRecord",
    "GeneratorConfig",
    "PlayerStyle",
    "ReadStats",
    "StockfishEvaluator",
    "TruncatedStreamError",
    "analyse_moves",
    "board_planes",
    "build_dataset",
    "collect_corpus",
    "data_source",
    "dataset_card",
    "encode_board",
    "generate",
    "index_to_move",
    "iter_games",
    "iterate_split",
    "legal_mask",
    "legal_move_indices",
    "load_builder",
    "load_ground_truth",
    "make_players",
    "move_features",
    "move_to_index",
    "open_text",
    "play_game",
    "ragged_to_mask",
    "split_keys",
    "time_control_class",
    "unpack_planes",
    "write_card",
]
