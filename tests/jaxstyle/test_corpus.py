"""Per-player selection and the deterministic 80/10/10 split."""

from __future__ import annotations

import pytest

from jaxstyle.chess.corpus import SPLITS, Corpus, collect_corpus, split_keys
from jaxstyle.chess.pgn import GameFilter
from jaxstyle.chess.sources import DataError
from tests.jaxstyle.samples import game


def write_games(path, specs):
    path.write_text("".join(game(site=s, white=w, black=b, moves=m) for s, w, b, m in specs))
    return path


OK = "1. e4 e5 2. Nf3"
ILLEGAL = "1. e4 e5 2. Ke3"


def test_split_is_80_10_10_per_player_and_independent_of_input_order():
    keys = [f"game{i}" for i in range(100)]
    split = split_keys("alice", keys)
    assert [len(split[s]) for s in SPLITS] == [80, 10, 10]
    assert sorted(sum(split.values(), [])) == sorted(keys)
    assert split_keys("alice", reversed(keys)) == split
    assert split_keys("bob", keys) != split  # the hash includes the player


def test_small_players_still_get_one_reference_and_one_query_game():
    split = split_keys("p", ["a", "b", "c"])
    assert [len(split[s]) for s in SPLITS] == [1, 1, 1]
    assert [len(split_keys("p", ["a", "b"])[s]) for s in SPLITS] == [2, 0, 0]


def test_real_games_give_two_players_with_all_six_kasparov_games(real_data):
    corpus = collect_corpus(real_data, GameFilter(min_games_per_player=3))
    assert corpus.players == ["Deep Blue (Computer)", "Garry Kasparov"]
    assert len(corpus.games) == 6
    assert corpus.games_per_player() == {"Deep Blue (Computer)": 6, "Garry Kasparov": 6}
    for player in corpus.players:
        assert [len(corpus.splits[s][player]) for s in SPLITS] == [4, 1, 1]
    # the four other standard games (anastasian-lewis' null move is never parsed)
    assert dict(corpus.stats.skipped) == {"min_games": 4, "variant": 2}
    # every game's plies are shared between its two players
    total = sum(corpus.num_positions(s) for s in SPLITS)
    assert total == sum(g.num_plies for g in corpus.games)


def test_min_games_drops_players_and_counts_their_games(tmp_path):
    specs = [(f"a{i}", "alice", "bob", OK) for i in range(3)] + [("c0", "carol", "dave", OK)]
    corpus = collect_corpus(
        write_games(tmp_path / "g.pgn", specs), GameFilter(min_games_per_player=2)
    )
    assert corpus.players == ["alice", "bob"]
    assert corpus.stats.games_kept == 3 and corpus.stats.skipped["min_games"] == 1


def test_player_below_minimum_after_illegal_games_is_dropped_in_the_full_pass(tmp_path):
    specs = [("a0", "alice", "x", OK), ("a1", "alice", "y", ILLEGAL), ("b0", "bob", "x", OK)]
    specs += [("b1", "bob", "y", OK)]
    corpus = collect_corpus(
        write_games(tmp_path / "g.pgn", specs), GameFilter(min_games_per_player=2)
    )
    assert corpus.players == ["bob", "x"]  # alice and y fell to one game each
    assert corpus.stats.skipped["illegal_move"] == 1
    assert corpus.stats.games_kept + sum(corpus.stats.skipped.values()) == corpus.stats.games_seen


def test_the_same_game_read_twice_is_kept_once(tmp_path):
    path = write_games(tmp_path / "g.pgn", [("a0", "alice", "bob", OK), ("a1", "alice", "bob", OK)])
    corpus = collect_corpus([path, path])
    assert len(corpus.games) == 2 and corpus.stats.skipped == {"duplicate": 2}
    assert corpus.games_per_player() == {"alice": 2, "bob": 2}


def test_max_players_keeps_the_most_active(tmp_path):
    specs = [(f"a{i}", "alice", f"o{i}", OK) for i in range(4)]
    specs += [(f"b{i}", "bob", f"p{i}", OK) for i in range(2)]
    corpus = collect_corpus(write_games(tmp_path / "g.pgn", specs), GameFilter(max_players=1))
    assert corpus.players == ["alice"] and len(corpus.games) == 4


def test_a_pgn_without_games_is_one_clear_error(tmp_path):
    (tmp_path / "empty.pgn").write_text("\n\n% nothing here\n")
    with pytest.raises(DataError, match="no games found in .*empty.pgn"):
        collect_corpus(tmp_path / "empty.pgn")


def test_filters_leaving_no_player_say_why(tmp_path):
    path = write_games(tmp_path / "g.pgn", [("a0", "alice", "bob", OK)])
    with pytest.raises(DataError, match="filters left no players.*none with >= 5 games"):
        collect_corpus(path, GameFilter(min_games_per_player=5))
    with pytest.raises(DataError, match=r"skipped 1 \(time_control=1\)"):
        collect_corpus(path, GameFilter(time_controls=("bullet",)))


def test_saved_corpus_loads_back_equal(real_data, tmp_path):
    game_filter = GameFilter(min_games_per_player=3, time_controls=("classical", "unknown"))
    corpus = collect_corpus(real_data, game_filter)
    corpus.save(tmp_path / "corpus.json.zst")
    loaded = Corpus.load(tmp_path / "corpus.json.zst")
    assert loaded == corpus
