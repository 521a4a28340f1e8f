"""Dataset card and the make_dataset command line, including bad input."""

from __future__ import annotations

import json
import random
import shutil

import chess
import chess.pgn
import zstandard

from jaxstyle.chess import card, make_dataset
from jaxstyle.chess.pgn import GameFilter, iter_games
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


def test_cli_out_that_is_a_file_is_one_error_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert make_dataset.main(["--out", str(tmp_path / "file"), "--pgn", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file, not a folder" in err[0]


def test_cli_failed_first_run_leaves_no_out_folder(tmp_path, capsys):
    out = tmp_path / "new" / "out"
    assert make_dataset.main(["--out", str(out), "--pgn", str(tmp_path / "missing.pgn")]) == 2
    assert not out.exists()
    empty = tmp_path / "empty.pgn"
    empty.write_text("\n")
    assert make_dataset.main(["--out", str(out), "--pgn", str(empty)]) == 2
    assert not out.exists()


def study_game(site: str, white: str) -> str:
    """A Lichess study chapter: it starts from a FEN."""
    return (
        f'[Event "Study: endings"]\n[Site "https://lichess.org/study/{site}"]\n'
        f'[White "{white}"]\n[Black "trainer"]\n[Result "*"]\n[SetUp "1"]\n'
        '[FEN "4k3/8/8/8/8/8/4P3/4K3 w - - 0 1"]\n\n1. e4 Kd7 2. e5 *\n\n'
    )


def test_cli_games_from_a_fen_need_allow_fen_start(tmp_path, capsys):
    (tmp_path / "study.pgn").write_text("".join(study_game(f"s{i}", "alice") for i in range(3)))
    argv = ["--pgn", str(tmp_path / "study.pgn"), "--no-progress", "--workers", "1"]
    assert make_dataset.main(["--out", str(tmp_path / "a"), *argv]) == 2
    err = capsys.readouterr().err
    assert "custom_start=3" in err and "passed the headers 0" in err and "kept 0" not in err
    assert make_dataset.main(["--out", str(tmp_path / "b"), *argv, "--allow-fen-start"]) == 0
    card_facts = json.loads((tmp_path / "b" / "card.json").read_text())
    assert card_facts["players"] == 2 and sum(card_facts["positions"].values()) == 9


def test_cli_player_allow_list_keeps_only_those_players(real_data, tmp_path, capsys):
    (tmp_path / "names.txt").write_text("Garry Kasparov\n\n")
    argv = ["--out", str(tmp_path / "o"), "--pgn", str(real_data), "--no-progress"]
    assert make_dataset.main([*argv, "--player-list", str(tmp_path / "names.txt")]) == 0
    facts = json.loads((tmp_path / "o" / "card.json").read_text())
    assert facts["players"] == 1 and facts["games_kept"] == 6  # Deep Blue is not listed
    mine = [g for g in iter_games(real_data) if "Garry Kasparov" in (g.white, g.black)]
    expected = sum(len(g.plies_of(g.color_of("Garry Kasparov"))) for g in mine)
    assert sum(facts["positions"].values()) == expected
    capsys.readouterr()
    argv[1] = str(tmp_path / "p")
    assert make_dataset.main([*argv, "--player", "Magnus Carlsen"]) == 2
    assert "in the allow-list" in capsys.readouterr().err


def test_cli_second_run_on_the_same_out_fails_while_the_first_holds_it(tmp_path, capsys):
    import subprocess
    import sys

    out = tmp_path / "o"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path;"
            "from jaxstyle.chess.build import BuildLock;"
            f"lock = BuildLock(Path({str(out)!r}) / '.make_dataset.lock').__enter__();"
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code = make_dataset.main(["--out", str(out), "--pgn", str(tmp_path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1
        assert f"is being built by another process (pid {holder.pid})" in err[0]
    finally:
        holder.kill()
        holder.wait()
    assert out.is_dir()  # the folder was not this run's to remove


def test_synthetic_card_reports_the_style_against_skill_balance_once(tiny_synthetic, tmp_path):
    facts = card.dataset_card(tiny_synthetic["data_dir"])
    balance = facts["style_balance"]
    assert set(balance["features"]) >= {"capture", "knight_move", "book"}
    assert balance["min_ratio"] == min(r["ratio"] for r in balance["features"].values())
    cache = tiny_synthetic["root"] / "style_balance.json"
    assert json.loads(cache.read_text())["balance"] == balance
    text = card.format_card(facts)
    assert "## Style against skill (synthetic generator)" in text and "| capture |" in text
    assert card.dataset_card(tiny_synthetic["data_dir"])["style_balance"] == balance  # cached
