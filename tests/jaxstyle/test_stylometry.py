"""Stylometry: cosine and likelihood identification, the accuracy table, probe and plot."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

from jaxstyle import stylometry, training
from tests.jaxstyle.tiny_style import random_positions, sample_moves, tiny_model


def test_cosine_identification_matches_a_numpy_reference():
    rng = np.random.default_rng(0)
    query, reference = rng.normal(size=(7, 5)), rng.normal(size=(11, 5))
    want = np.array(
        [[q @ r / np.linalg.norm(q) / np.linalg.norm(r) for r in reference] for q in query]
    )
    got = stylometry.cosine_similarity(jnp.asarray(query), jnp.asarray(reference))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(stylometry.identify_by_cosine(query, reference), want.argmax(1))
    # a scaled copy of a reference is identified as that reference
    assert stylometry.identify_by_cosine(3 * reference[[4, 2]], reference).tolist() == [4, 2]


def test_likelihood_matrix_equals_scoring_each_candidate_separately():
    model = tiny_model()
    planes, mask = random_positions(37)
    moves = sample_moves(model, planes, mask, np.arange(37) % 3)
    group = np.arange(37) % 3
    candidates = np.asarray(model.style_vectors())
    got = stylometry.likelihood_matrix(
        model, planes, mask, moves, group, 3, candidates, batch_size=16, chunk=4
    )
    want = np.zeros((3, len(candidates)))
    for p, z in enumerate(candidates):  # the per-candidate loop the batched path replaces
        _, logp = training.score_moves(
            model, planes, mask, moves, routing=np.repeat(z[None], 37, 0), batch_size=64
        )
        for g in range(3):
            want[g, p] = logp[group == g].mean()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def make_queries(model, players: int, games: int, plies: int = 12, seed: int = 1):
    n = players * games * plies
    planes, mask = random_positions(n, seed=seed)
    player = np.repeat(np.arange(players), games * plies)
    game = np.repeat(np.arange(players * games), plies)
    moves = sample_moves(model, planes, mask, player, seed=seed)
    return stylometry.Queries(planes, mask, moves, player, game)


def test_queries_select_each_players_first_games_and_skip_players_without_enough():
    model = tiny_model()
    q = make_queries(model, players=3, games=4, plies=2)
    keep = ~((q.player == 1) & (q.game >= 6))  # player 1 keeps 2 of its 4 games
    q = stylometry.Queries(*(a[keep] for a in (q.planes, q.legal_mask, q.move, q.player, q.game)))
    assert q.games_per_player() == {0: 4, 1: 2, 2: 4}
    index, group = q.first_games(np.array([2, 1, 0]), k=3)
    assert set(np.unique(group)) == {0, 2}  # player 1 (slot 1) has only 2 games
    assert sorted(set(q.game[index[group == 0]])) == [8, 9, 10]
    assert sorted(set(q.game[index[group == 2]])) == [0, 1, 2]


def test_cap_per_group_keeps_at_most_cap_distinct_positions_of_each_group_in_order():
    group = np.repeat([0, 1, 2], [5, 2, 9])
    index = np.arange(100, 116)
    got_index, got_group = stylometry.cap_per_group(index, group, 3, seed=4)
    np.testing.assert_array_equal(np.bincount(got_group), [3, 2, 3])
    assert np.all(np.diff(got_index) > 0)  # order kept, no repeats
    for g in range(3):  # each kept position belongs to its own group
        assert set(got_index[got_group == g]) <= set(index[group == g])
    again = stylometry.cap_per_group(index, group, 3, seed=4)
    np.testing.assert_array_equal(again[0], got_index)  # seeded
    everything = stylometry.cap_per_group(index, group, None)
    np.testing.assert_array_equal(everything[0], index)


def six_player_table(**kwargs) -> dict:
    """The stylometry table of 6 tiny-model players with 8 query games each (100 fit steps)."""
    model = tiny_model(num_players=6)
    queries = make_queries(model, players=6, games=8)
    return stylometry.stylometry_table(
        model, model.style_vectors(), queries, steps=100, key=jax.random.PRNGKey(0), **kwargs
    )


@pytest.mark.slow
def test_players_sampled_from_distinct_style_vectors_are_identified_by_both_rules():
    vectors = tiny_model(num_players=6).style_vectors()
    result = six_player_table(
        pool_sizes=(3, 6, 12),
        query_games=(8, 50),
        learning_rate=0.1,
        alternatives={"same": vectors, "swapped": vectors[::-1]},
    )
    rows = {(r["pool"], r["query_games"]): r for r in result["rows"]}
    assert rows[(6, 8)]["likelihood"] == 1.0
    assert rows[(6, 8)]["cosine"] >= 5 / 6, rows[(6, 8)]
    assert rows[(6, 8)]["cosine_same"] == rows[(6, 8)]["cosine"]
    assert rows[(6, 8)]["cosine_swapped"] <= 1 / 6  # row p holds player 5 - p's vector
    assert rows[(12, 8)]["cosine_swapped"] is None
    assert rows[(6, 8)]["random"] == pytest.approx(1 / 6)
    assert rows[(12, 8)]["cosine"] is None  # only 6 players exist
    assert rows[(3, 50)]["players"] == 0 and rows[(3, 50)]["cosine"] is None
    assert "| 6 | 8 |" in result["table_md"] and "n/a" in result["table_md"]
    assert "cosine top-1 (swapped reference)" in result["table_md"]
    assert result["caps"]["fit_positions_per_query"] is None


@pytest.mark.slow
def test_capped_fits_and_likelihood_still_identify_distinct_players():
    result = six_player_table(
        pool_sizes=(6,),
        query_games=(8,),
        batch_size=64,
        max_positions_per_query=48,  # of each player's 96 positions
        likelihood_max_positions=32,
    )
    (row,) = result["rows"]
    assert row["likelihood"] == 1.0 and row["cosine"] >= 5 / 6, row
    assert result["caps"] == {
        "fit_positions_per_query": 48,
        "likelihood_positions_per_query": 32,
        "fit_steps": 100,
        "fit_batch_size": 64,
    }


def test_linear_probe_recovers_a_linear_map_and_not_noise():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 8))
    targets = np.stack([vectors @ rng.normal(size=8), rng.normal(size=200)], axis=1)
    targets[:, 0] += 0.05 * rng.normal(size=200)
    train = np.arange(200) < 150
    r2 = stylometry.linear_probe(vectors, targets, train)
    assert r2[0] > 0.95 and r2[1] < 0.1
    with pytest.raises(ValueError, match="held-out"):
        stylometry.linear_probe(vectors, targets, np.ones(200, bool))


def test_projection_figure_draws_one_series_per_archetype_present():
    rng = np.random.default_rng(0)
    fig = stylometry.projection_figure(rng.normal(size=(30, 6)), np.arange(30) % 3, "abcd")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.collections) == 3 and ax.get_xlabel().startswith("PC1")


def test_queries_without_positions_or_a_reader_are_refused():
    column = np.zeros(3, np.int32)
    with pytest.raises(ValueError, match="reader"):
        stylometry.Queries(None, None, column, column, column)
