"""Dataset card and the make_dataset command line, including bad input."""

from __future__ import annotations

import json
import random
import shutil

import chess
import chess.pgn
import zstandard

from jaxstyle.chess import card, make_dataset
from jaxstyle.chess.pgn import GameFilter
from jaxstyle.chess.tfds_builder import build_dataset


def test_card_reports_players_histogram_positions_filter_and_skips(real_data, tmp_path):
    sources = tmp_path / "pgn"
    shutil.copytree(real_data, sources, ignore=shutil.ignore_patterns("*.md"))
    (sources / "broken.pgn").write_text(
        '[White "Garry Kasparov"]\n[Black "Deep Blue (Computer)"]\n\n1. e4 e5 2. Ke3 *\n'
    )
    build_dataset(tmp_path / "tfds", sources, GameFilter(min_games_per_player=3))
    facts = card.dataset_card(tmp_path / "tfds")
    assert facts["players"] == 2 and facts["games"] == 6
    assert facts["skipped"] == {"illegal_move": 1, "min_games": 4, "variant": 2}
    assert facts["games_seen"] == 13 and facts["games_kept"] == 6
    assert facts["games_per_player"]["histogram"] == [{"lo": 6, "hi": 6, "players": 2}]
    assert sum(facts["positions"].values()) == 519
    assert facts["filter"]["min_games_per_player"] == 3
    path = card.write_card(tmp_path / "tfds", tmp_path / "card")
    text = path.read_text()
    for needle in ("players: 2", "## Skipped games by reason", "- variant: 2", "illegal_move: 1"):
        assert needle in text
    png = (tmp_path / "card" / "games_per_player.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "card" / "card.json").read_text())["players"] == 2


def test_histogram_bins_cover_every_player_once():
    import numpy as np

    counts = np.array([1, 2, 2, 5, 9, 30, 31, 100])
    rows = card.histogram(counts, bins=4)
    assert sum(r["players"] for r in rows) == len(counts)
    assert rows[0]["lo"] == 1 and rows[-1]["hi"] >= 100


def test_cli_builds_a_synthetic_dataset_once_and_reuses_it(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--players", "4", "--games", "2", "--max-plies", "30"]
    argv += ["--workers", "1", "--no-progress"]
    assert make_dataset.main(argv) == 0
    out = capsys.readouterr().out
    assert "synthetic: 4 games generated" in out and "dataset ready: 4 players" in out
    for name in ("players.json", "generation.json", "card.md", "games_per_player.png"):
        assert (tmp_path / name).is_file()
    assert make_dataset.main(argv) == 0
    assert "all 4 games already in" in capsys.readouterr().out


def test_cli_refuses_to_reuse_a_dataset_built_with_another_filter(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--players", "2", "--games", "1", "--max-plies", "10"]
    argv += ["--workers", "1", "--no-progress"]
    assert make_dataset.main(argv) == 0
    capsys.readouterr()
    assert make_dataset.main(argv + ["--min-elo", "2000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "min_elo: built None, asked 2000" in err[0]


def test_cli_bad_input_ends_with_one_error_line(tmp_path, capsys):
    cases = {
        "missing": (tmp_path / "missing.pgn.zst", "PGN source not found"),
        "empty": (tmp_path / "empty.pgn", "no games found"),
        "garbage": (tmp_path / "garbage.pgn.zst", "not a valid zstd stream"),
    }
    cases["empty"][0].write_text("\n")
    cases["garbage"][0].write_bytes(b"not zstd at all")
    for name, (path, message) in cases.items():
        code = make_dataset.main(["--out", str(tmp_path / name), "--pgn", str(path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], (name, err)


def test_cli_with_filters_that_leave_no_player_explains_the_skips(real_data, tmp_path, capsys):
    code = make_dataset.main(
        ["--out", str(tmp_path / "o"), "--pgn", str(real_data), "--time-control", "blitz"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "filters left no players" in err[0] and "time_control=" in err[0]


def random_game_pgn(rng: random.Random, index: int) -> str:
    board = chess.Board()
    while not board.is_game_over() and board.ply() < 120:
        board.push(rng.choice(list(board.legal_moves)))
    game = chess.pgn.Game.from_board(board)
    game.headers.update({"White": f"w{index % 3}", "Black": f"b{index % 2}", "Site": "?"})
    return str(game) + "\n\n"


def test_cli_reads_a_truncated_lichess_style_dump_and_reports_the_cut(tmp_path, capsys):
    rng = random.Random(0)
    compressor = zstandard.ZstdCompressor(level=1).compressobj()
    blocks = []
    for index in range(40):  # one zstd block per game, like a dump written in pieces
        blocks.append(compressor.compress(random_game_pgn(rng, index).encode()))
        blocks.append(compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
    blob = b"".join(blocks) + compressor.flush()
    dump = tmp_path / "dump.pgn.zst"
    dump.write_bytes(blob[: int(len(blob) * 0.7)])
    code = make_dataset.main(["--out", str(tmp_path / "o"), "--pgn", str(dump), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "truncated_stream=1" in captured.out and "zstd stream is truncated" in captured.out
    kept = json.loads((tmp_path / "o" / "card.json").read_text())["games_kept"]
    assert 20 <= kept < 40


def test_cli_build_interrupted_after_reading_continues_without_reading_again(
    real_data, tmp_path, capsys, monkeypatch
):
    argv = ["--out", str(tmp_path), "--pgn", str(real_data), "--min-games", "3", "--no-progress"]
    assert make_dataset.main(argv) == 0
    shutil.rmtree(tmp_path / "tfds")  # as if the dataset write had been interrupted
    capsys.readouterr()

    def must_not_read(*args, **kwargs):
        raise AssertionError("the sources were read again")

    monkeypatch.setattr("jaxstyle.chess.corpus.collect_corpus", must_not_read)
    assert make_dataset.main(argv) == 0
    out = capsys.readouterr().out
    assert "reusing the games read before" in out and "dataset ready: 2 players" in out
