"""Builder round trip: PGN → array_record shards → tfds.data_source → the same positions."""

from __future__ import annotations

import json

import chess
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxstyle.chess import encoding, tfds_builder
from jaxstyle.chess.corpus import SPLITS
from jaxstyle.chess.pgn import GameFilter, parse_game, selection_check
from jaxstyle.chess.pgn_split import iter_file_games
from jaxstyle.chess.sources import DataError, resolve_sources


def games_by_ordinal(sources) -> dict:
    """Every game of ``sources`` that parses, keyed by its ordinal in reading order."""
    games, ordinal, check = {}, 0, selection_check(GameFilter())
    for path in resolve_sources(sources):
        for text in iter_file_games(path):
            record, _ = parse_game(text, path.name, check, GameFilter())
            if record is not None:
                games[ordinal] = record
            ordinal += 1
    return games


def test_every_record_round_trips_to_the_position_and_move_it_came_from(tiny_synthetic):
    builder = tfds_builder.load_builder(tiny_synthetic["data_dir"])
    metadata = builder.info.metadata
    games = games_by_ordinal(tiny_synthetic["pgn"])
    for split in SPLITS:
        source = tfds.data_source(
            "chess_positions", data_dir=str(tiny_synthetic["data_dir"]), split=split
        )
        assert len(source) == metadata["positions"][split] > 0
        for record in source:
            player = metadata["players"][record["player"]]
            game = games[int(record["game"])]
            assert player in (game.white, game.black)
            board = chess.Board(game.fen)
            for uci in game.moves[: record["ply"]]:
                board.push_uci(uci)
            assert board.turn == (chess.WHITE if game.white == player else chess.BLACK)
            np.testing.assert_array_equal(record["planes"], encoding.encode_board(board))
            np.testing.assert_array_equal(record["legal"], encoding.legal_move_indices(board))
            move = encoding.index_to_move(board, int(record["move"]))
            assert move.uci() == game.moves[record["ply"]]
            elo = game.white_elo if game.white == player else game.black_elo
            assert record["elo"] == elo


def test_each_player_game_lands_in_exactly_one_split_with_all_its_positions(tiny_synthetic):
    metadata = tfds_builder.load_builder(tiny_synthetic["data_dir"]).info.metadata
    seen = {}
    for split in SPLITS:
        source = tfds_builder.data_source(tiny_synthetic["data_dir"], split)
        for record in source:
            key = (int(record["player"]), int(record["game"]))
            assert seen.setdefault(key, split) == split
    games = games_by_ordinal(tiny_synthetic["pgn"])
    assert len(seen) == 2 * len(games)  # both players of every synthetic game are kept
    config = tiny_synthetic["config"]
    assert metadata["games_per_player"] == {p: config.games_per_player for p in metadata["players"]}
    assert metadata["num_games"] == len(games)


def test_player_offsets_are_the_contiguous_ranges_of_each_player(tiny_synthetic):
    metadata = tfds_builder.load_builder(tiny_synthetic["data_dir"]).info.metadata
    for split in SPLITS:
        source = tfds_builder.data_source(tiny_synthetic["data_dir"], split)
        players = np.array([r["player"] for r in source])
        end = 0
        for player_id, start, count in metadata["player_offsets"][split]:
            assert start == end
            assert (players[start : start + count] == player_id).all()
            end = start + count
        assert end == len(source)


def test_real_games_build_and_read_back_without_tensorflow(real_data, tmp_path):
    builder = tfds_builder.build_dataset(tmp_path, real_data, GameFilter(min_games_per_player=3))
    metadata = builder.info.metadata
    assert metadata["players"] == ["Deep Blue (Computer)", "Garry Kasparov"]
    assert metadata["read_stats"]["skipped"] == {"min_games": 4, "variant": 2}
    total = sum(len(tfds_builder.data_source(tmp_path, s)) for s in SPLITS)
    assert total == 89 + 89 + 95 + 111 + 98 + 37  # every ply of the six games
    with pytest.raises(ImportError):
        import tensorflow  # noqa: F401


def test_metadata_holds_nothing_per_game(real_data, tmp_path):
    tfds_builder.build_dataset(tmp_path, real_data, GameFilter(min_games_per_player=3))
    text = (tmp_path / "chess_positions" / "1.0.0" / "metadata.json").read_text()
    assert "kasparov-deep-blue-1997.pgn#" not in text  # no game keys
    assert set(json.loads(text)) >= {"players", "player_offsets", "num_games", "read_stats"}
    assert not list(tmp_path.rglob("incomplete*"))
    assert not (tmp_path / "chess_positions-build").exists()


def test_rebuilding_a_prepared_dataset_reuses_it(tiny_synthetic, tmp_path):
    again = tfds_builder.build_dataset(tiny_synthetic["data_dir"], tmp_path / "not-read.pgn")
    assert (
        again.info.metadata["positions"]
        == tfds_builder.load_builder(tiny_synthetic["data_dir"]).info.metadata["positions"]
    )


def test_the_tfds_builder_api_builds_through_download_and_prepare(real_data, tmp_path, capfd):
    builder = tfds_builder.ChessPositions(
        data_dir=str(tmp_path), sources=real_data, game_filter=GameFilter(min_games_per_player=3)
    )
    builder.download_and_prepare()
    assert builder.info.metadata["players"] == ["Deep Blue (Computer)", "Garry Kasparov"]
    assert len(tfds.data_source("chess_positions", data_dir=str(tmp_path), split="train")) > 0
    captured = capfd.readouterr()
    for junk in ("Downloading", "Unknown size", "\x1b[", "\r"):
        assert junk not in captured.out + captured.err, junk


def test_reading_a_folder_without_a_dataset_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="no prepared chess_positions dataset"):
        tfds_builder.data_source(tmp_path, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        tfds_builder.data_source(tmp_path, "test")


def test_building_from_a_missing_file_creates_nothing(tmp_path):
    with pytest.raises(DataError, match="PGN source not found"):
        tfds_builder.build_dataset(tmp_path / "ds", tmp_path / "missing.pgn.zst")
    assert not (tmp_path / "ds").exists()
