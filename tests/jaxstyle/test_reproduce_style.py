"""The style reproduction's evaluation on a tiny dataset and a tiny model (no training)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments import reproduce_style
from tests.jaxstyle.tiny_style import tiny_model

TINY = dict(
    pool_sizes=(3, 6, 50),
    query_games=(1, 100),
    fit_steps=10,
    refit_games=2,
    likelihood_max_pool=6,
    steer_lambdas=(0.0, 2.0),
    steer_games=2,
    steer_plies=8,
    oracle_games=6,
)


def test_lazy_queries_read_the_same_positions_as_an_eager_load(tiny_synthetic):
    data_dir = tiny_synthetic["data_dir"]
    splits = ("reference", "query")
    eager = reproduce_style.concat(*(reproduce_style.load_split(data_dir, k) for k in splits))
    lazy = reproduce_style.lazy_queries(data_dir, splits)
    for k in ("move", "player", "game"):
        np.testing.assert_array_equal(getattr(lazy, k), eager[k])
    index = np.random.default_rng(0).permutation(len(eager["move"]))[:40]
    index[-1] = index[0]  # a record asked for twice
    planes, legal, move = lazy.positions(index)
    np.testing.assert_array_equal(planes, eager["planes"][index])
    np.testing.assert_array_equal(legal, eager["legal_mask"][index])
    np.testing.assert_array_equal(move, eager["move"][index])
    head = reproduce_style.lazy_queries(data_dir, ("query",), per_player=3)
    first = reproduce_style.first_rows(data_dir, "query", 3)
    want = reproduce_style.load_split(data_dir, "query", first)
    np.testing.assert_array_equal(head.positions(np.arange(len(first)))[0], want["planes"])


@pytest.mark.slow
def test_evaluation_writes_every_table_plot_and_number(tiny_synthetic, tmp_path):
    model = tiny_model(num_players=6)
    reference = model.style_vectors()
    results = reproduce_style.evaluate(
        model, reference, tiny_synthetic["data_dir"], tiny_synthetic["root"], tmp_path, TINY
    )
    mm = results["move_matching"]
    assert 0 <= mm["base"] <= 1 and 0 <= mm["style"] <= 1 and 0 < mm["ceiling"] <= 1
    rows = {(r["pool"], r["query_games"]): r for r in results["stylometry"]["rows"]}
    assert rows[(6, 1)]["cosine"] is not None and rows[(6, 1)]["likelihood"] is not None
    assert rows[(50, 1)]["cosine"] is None and rows[(3, 100)]["players"] == 0
    assert rows[(6, 1)]["cosine_refit"] is not None
    assert "(refit reference)" in results["stylometry"]["table_md"]
    assert set(results["probe_refit"]["theta_r2"]) >= {"capture", "knight_move"}
    assert set(results["probe"]["theta_r2"]) >= {"capture", "knight_move"}
    assert len(results["steering"]["capture"]["values"]) == 2
    assert len(results["interpolation"]["agreement"]) == 6
    for plot in results["plots"]:
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = reproduce_style.table_md(results)
    assert "| pool | query games |" in text and "ceiling" in text
    line = reproduce_style.headline(results)
    assert "99.8%" in line and "94.4%" in line
    json.dumps(results, default=float)  # JSON-able


def test_oracle_ceiling_is_the_mean_top_policy_probability(tiny_synthetic):
    truth, _ = reproduce_style.truth_by_id(tiny_synthetic["data_dir"], tiny_synthetic["root"])
    ceiling = reproduce_style.oracle_ceiling(tiny_synthetic["root"], truth, max_games=3)
    values = np.array(list(ceiling.values()))
    assert len(values) == 6 and ((values > 0) & (values <= 1)).all()


def test_population_ceiling_is_at_most_the_own_policy_ceiling_and_policies_match(
    tiny_synthetic,
):
    import chess

    from jaxstyle.chess.balance import policy
    from jaxstyle.chess.evaluator import FastEvaluator, analyse_moves
    from jaxstyle.chess.play import repertoire_move
    from jaxstyle.chess.players import load_ground_truth
    from jaxstyle.chess.style_features import FEATURES, move_features

    truth, _ = reproduce_style.truth_by_id(tiny_synthetic["data_dir"], tiny_synthetic["root"])
    own, mix = reproduce_style.oracle_ceiling(
        tiny_synthetic["root"], truth, max_games=3, population=True
    )
    assert all(0 < mix[i] <= own[i] + 1e-9 for i in own)
    config, _ = load_ground_truth(tiny_synthetic["root"])
    board = chess.Board()  # the opening: every player's own book move counts
    table = analyse_moves(board)
    deltas = FastEvaluator().deltas(table)
    got = reproduce_style._policies(
        config, truth, range(len(truth)), table, deltas, move_features(table, None),
        np.array([p.theta for p in truth]), 1 / np.array([p.tau for p in truth]),
        FEATURES.index("book"), repertoire_move,
    )  # fmt: skip
    for q, player in enumerate(truth):
        book = repertoire_move(player, table, deltas, config.book_tolerance)
        want = policy(player, deltas, move_features(table, book))
        np.testing.assert_allclose(got[q], want, rtol=1e-5, atol=1e-7)
