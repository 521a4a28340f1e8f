"""The streaming reader on real files and on corrupted ones."""

from __future__ import annotations

import chess
import pytest
import zstandard

from jaxstyle.chess.pgn import (
    GameFilter,
    ReadStats,
    count_player_games,
    iter_games,
    time_control_class,
)
from jaxstyle.chess.sources import DataError, open_text
from tests.jaxstyle.samples import game


def read(path, game_filter=None):
    stats = ReadStats()
    games = list(iter_games(path, game_filter, stats))
    return games, stats


def test_real_files_keep_standard_games_and_count_variants_and_null_moves(real_data):
    games, stats = read(real_data)
    assert stats.games_seen == 12 and stats.games_kept == 9
    assert dict(stats.skipped) == {"variant": 2, "null_move": 1}
    assert stats.summary_line() == (
        "read 12 games from 7 files: kept 9, skipped 3 (null_move=1, variant=2)"
    )
    kasparov = [g for g in games if g.key.startswith("kasparov")]
    assert len(kasparov) == 6 and kasparov[0].white == "Garry Kasparov"
    assert kasparov[0].white_elo == -1  # Elo "?"
    board = chess.Board()
    for uci in kasparov[0].moves:
        board.push_uci(uci)
    assert board.board_fen() == "4r3/6P1/2p2P1k/1p6/pP2p1R1/P1B5/2P2K2/3r4"


def test_empty_line_between_headers_is_tolerated(real_data):
    games, _ = read(real_data / "chessbase-empty-line.pgn")
    assert len(games) == 1
    assert (games[0].white, games[0].black, games[0].num_plies) == ("Stockfish 8", "AlphaZero", 134)


def test_zst_stream_reads_the_same_games_as_plain_text_also_across_frames(real_data, tmp_path):
    plain, _ = read(real_data)
    # one zstd frame per file, concatenated: multi-frame streams occur in practice
    blob = b"".join(
        zstandard.ZstdCompressor().compress(p.read_bytes() + b"\n\n")
        for p in sorted(real_data.glob("*.pgn"))
    )
    (tmp_path / "all.pgn.zst").write_bytes(blob)
    packed, stats = read(tmp_path / "all.pgn.zst")
    assert [g.moves for g in packed] == [g.moves for g in plain]
    assert dict(stats.skipped) == {"variant": 2, "null_move": 1}


def test_truncated_zst_keeps_the_games_before_the_cut_and_says_so(real_data, tmp_path):
    text = "".join(game(site=f"g{i}", moves="1. d4 d5 2. c4 e6 3. Nc3 Nf6") for i in range(3000))
    blob = zstandard.ZstdCompressor(level=1).compress(text.encode())
    path = tmp_path / "cut.pgn.zst"
    path.write_bytes(blob[: len(blob) // 2])
    games, stats = read(path)
    assert 0 < len(games) < 3000
    assert stats.skipped["truncated_stream"] == 1
    assert "truncated" in stats.summary_line() and f"kept the {len(games)} games" in (
        stats.summary_line()
    )


def test_bom_comments_nags_variations_and_junk_lines_do_not_change_the_mainline(tmp_path):
    clean = game(moves="1. e4 e5 2. Nf3 Nc6 3. Bb5 a6")
    messy = "\ufeff% escape line\n" + game(
        moves="1. e4 {best by test} e5 $1 2. Nf3!? (2. f4 exf4 (2... d5) 3. Nf3) Nc6 ; note\n"
        "3. Bb5?! {[%clk 0:01:00]} a6 $6"
    )
    (tmp_path / "clean.pgn").write_text(clean)
    (tmp_path / "messy.pgn").write_text(messy, encoding="utf-8")
    assert [g.moves for g in read(tmp_path / "messy.pgn")[0]] == [
        g.moves for g in read(tmp_path / "clean.pgn")[0]
    ]


def test_illegal_ambiguous_and_unparsable_moves_skip_only_their_game(tmp_path):
    text = (
        game(site="ok1")
        + game(site="illegal", moves="1. e4 e5 2. Ke3")
        + game(site="junk", moves="1. e4 xyz9 2. Nf3")
        + game(site="ambiguous", moves="1. Nc3 a6 2. Nf3 a5 3. Nb5 a4 4. Nd4")
        + game(site="ok2")
    )
    (tmp_path / "bad.pgn").write_bytes(text.encode() + b"\xff\xfe broken bytes\n")
    games, stats = read(tmp_path / "bad.pgn")
    assert [g.key[-3:] for g in games] == ["ok1", "ok2"]
    assert stats.skipped["illegal_move"] == 3


def test_variants_are_skipped_by_header_and_by_board(tmp_path):
    chess960 = game(site="960").replace(
        '[TimeControl "300+0"]',
        '[TimeControl "300+0"]\n[Variant "Chess960"]\n'
        '[FEN "bnrbkrqn/pppppppp/8/8/8/8/PPPPPPPP/BNRBKRQN w KQkq - 0 1"]\n[SetUp "1"]',
    )
    antichess = game(site="anti").replace('[Result "1-0"]', '[Result "1-0"]\n[Variant "Antichess"]')
    custom = game(site="custom", moves="1. Kd2").replace(
        '[Result "1-0"]', '[Result "1-0"]\n[FEN "4k3/8/8/8/8/8/8/4K3 w - - 0 1"]'
    )
    (tmp_path / "variants.pgn").write_text(chess960 + antichess + custom + game(site="std"))
    games, stats = read(tmp_path / "variants.pgn")
    assert [g.key[-3:] for g in games] == ["std"]
    assert dict(stats.skipped) == {"variant": 2, "custom_start": 1}
    games, _ = read(tmp_path / "variants.pgn", GameFilter(standard_start_only=False))
    assert sorted(g.key[-3:] for g in games) == ["std", "tom"]
    assert games[0].fen == "4k3/8/8/8/8/8/8/4K3 w - - 0 1"
    broken = custom.replace("4k3/8/8/8/8/8/8/4K3", "4k3/8/8/8/8/8/8/4K3/9")
    (tmp_path / "bad_fen.pgn").write_text(broken + game(site="std"))
    games, stats = read(tmp_path / "bad_fen.pgn", GameFilter(standard_start_only=False))
    assert len(games) == 1 and dict(stats.skipped) == {"bad_fen": 1}


@pytest.mark.parametrize(
    "value,expected",
    [
        ("15+0", "ultrabullet"),
        ("60+0", "bullet"),
        ("120+1", "bullet"),
        ("180+0", "blitz"),
        ("300+3", "blitz"),
        ("480+0", "rapid"),
        ("600+5", "rapid"),
        ("1500+0", "classical"),
        ("40/7200:20/3600:900+30", "classical"),
        ("-", "correspondence"),
        ("?", "unknown"),
        (None, "unknown"),
        ("abc", "unknown"),
    ],
)
def test_time_control_class_follows_lichess_base_plus_40_increments(value, expected):
    assert time_control_class(value) == expected


def test_header_filters_rated_time_control_elo_and_unknown_players(tmp_path):
    text = (
        game(site="keep")
        + game(site="bullet", tc="60+0")
        + game(site="weak", elo=900)
        + game(site="casual").replace("Rated Blitz", "Casual Blitz")
        + game(site="nobody", white="?", black="?")
    )
    (tmp_path / "f.pgn").write_text(text)
    games, stats = read(
        tmp_path / "f.pgn", GameFilter(time_controls=("blitz",), rated_only=True, min_elo=1000)
    )
    assert [g.key[-4:] for g in games] == ["keep"]
    assert dict(stats.skipped) == {
        "time_control": 1,
        "elo": 1,
        "unrated": 1,
        "unknown_player": 1,
    }


def test_unknown_time_control_class_in_a_filter_is_rejected():
    with pytest.raises(ValueError, match="unknown time-control class"):
        GameFilter(time_controls=("lightning",))


def test_header_pass_counts_games_per_player_without_parsing_moves(tmp_path):
    text = game(site="1") + game(site="2", white="carol") + game(site="3", moves="1. e4 e5 2. Ke3")
    (tmp_path / "c.pgn").write_text(text)
    counts, stats = count_player_games(tmp_path / "c.pgn")
    assert counts == {"alice": 2, "bob": 3, "carol": 1}  # illegal moves unseen in this pass
    assert stats.games_seen == 3


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="PGN source not found: .*nope.pgn.zst"):
        list(iter_games(tmp_path / "nope.pgn.zst"))
    with pytest.raises(DataError, match="no .pgn or .pgn.zst files"):
        list(iter_games(tmp_path))


def test_a_file_that_is_not_zstd_is_skipped_and_counted_with_its_message(tmp_path):
    (tmp_path / "fake.pgn.zst").write_text(game())
    stats = ReadStats()
    assert list(iter_games(tmp_path / "fake.pgn.zst", stats=stats)) == []
    assert stats.skipped == {"corrupt_stream": 1}
    assert "not a valid zstd stream" in stats.summary_line()


def test_a_corrupt_zst_keeps_its_games_before_the_damage_and_the_other_files(tmp_path):
    text = "".join(game(site=f"g{i}", moves="1. d4 d5 2. c4 e6 3. Nc3 Nf6") for i in range(3000))
    blob = bytearray(zstandard.ZstdCompressor(level=1, write_checksum=True).compress(text.encode()))
    blob[len(blob) // 2] ^= 0xFF  # a flipped byte inside the frame
    (tmp_path / "a-corrupt.pgn.zst").write_bytes(bytes(blob))
    (tmp_path / "b-fine.pgn").write_text(game(site="fine"))
    stats = ReadStats()
    games = list(iter_games(tmp_path, stats=stats))
    assert games[-1].key.endswith("fine") and len(games) < 3001
    assert stats.skipped["corrupt_stream"] == 1 and len(stats.files) == 2
    assert "a-corrupt.pgn.zst: not a valid zstd stream" in stats.summary_line()


def test_a_plain_pgn_cut_mid_game_drops_the_cut_game(tmp_path):
    text = game(site="whole") + game(site="cut", moves="1. e4 e5 2. Nf3 Nc6 3. Bb5 a6")
    (tmp_path / "cut.pgn").write_text(text[: text.rindex("a6") + 2])  # no result token
    games, stats = read(tmp_path / "cut.pgn")
    assert [g.key[-5:] for g in games] == ["whole"]
    assert dict(stats.skipped) == {"unterminated": 1}


def test_latin1_headers_name_the_same_player_as_utf8(tmp_path):
    (tmp_path / "utf8.pgn").write_text(game(white="Polgár"), encoding="utf-8")
    (tmp_path / "latin1.pgn").write_bytes(game(site="b", white="Polgár").encode("latin-1"))
    names = {g.white for g in read(tmp_path)[0]}
    assert names == {"Polgár"}


def test_anonymous_names_are_not_players(tmp_path):
    text = game(site="1", white="NN", black="bob") + game(site="2", white="?", black="N.N.")
    text += game(site="3", white="Anonymous", black="carol")
    (tmp_path / "anon.pgn").write_text(text)
    counts, stats = count_player_games(tmp_path / "anon.pgn")
    assert counts == {"bob": 1, "carol": 1}
    assert stats.skipped == {"unknown_player": 1}


def test_standard_only_false_keeps_chess960_but_never_other_variants(tmp_path):
    chess960 = game(site="960", moves="1. g3").replace(
        '[TimeControl "300+0"]',
        '[TimeControl "300+0"]\n[Variant "Chess960"]\n'
        '[FEN "bnrbkrqn/pppppppp/8/8/8/8/PPPPPPPP/BNRBKRQN w KQkq - 0 1"]\n[SetUp "1"]',
    )
    atomic = game(site="atomic").replace('[Result "1-0"]', '[Result "1-0"]\n[Variant "Atomic"]')
    (tmp_path / "v.pgn").write_text(chess960 + atomic + game(site="std"))
    loose = GameFilter(standard_only=False, standard_start_only=False)
    games, stats = read(tmp_path / "v.pgn", loose)
    assert sorted(g.key[-3:] for g in games) == ["960", "std"]
    assert dict(stats.skipped) == {"variant": 1}
    games, stats = read(tmp_path / "v.pgn", GameFilter(standard_start_only=False))
    assert [g.key[-3:] for g in games] == ["std"] and dict(stats.skipped) == {"variant": 2}


def test_game_cutter_agrees_with_python_chess_on_every_shipped_file(real_data):
    import chess.pgn

    from jaxstyle.chess.pgn_split import iter_file_games

    for path in sorted(real_data.glob("*.pgn")):
        with open_text(path) as handle:
            expected = []
            while (parsed := chess.pgn.read_game(handle)) is not None:
                expected.append(dict(parsed.headers))
        cut = [g.headers() for g in iter_file_games(path)]
        assert len(cut) == len(expected), path.name
        for mine, theirs in zip(cut, expected):
            assert {k: v for k, v in theirs.items() if k in mine} == mine, path.name


def test_open_text_strips_the_byte_order_mark(tmp_path):
    (tmp_path / "bom.pgn").write_bytes(b'\xef\xbb\xbf[Event "x"]\n')
    with open_text(tmp_path / "bom.pgn") as handle:
        assert handle.readline() == '[Event "x"]\n'
