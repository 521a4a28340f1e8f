"""Steering: deltas, interpolation, batched self-play with the style model, properties."""

from __future__ import annotations

import chess
import numpy as np
import pytest
from matplotlib.figure import Figure

from jaxstyle import steering, training
from tests.jaxstyle.tiny_style import random_positions, sample_moves, tiny_model


def test_property_delta_steer_and_interpolate_follow_their_formulas():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(10, 4)).astype(np.float32)
    has = np.arange(10) < 3
    delta = steering.property_delta(vectors, has)
    np.testing.assert_allclose(delta, vectors[:3].mean(0) - vectors.mean(0), rtol=1e-5)
    steered = steering.steer(vectors[5], delta, [0.0, 2.0])
    np.testing.assert_allclose(steered[1], vectors[5] + 2 * delta, rtol=1e-5)
    np.testing.assert_allclose(steered[0], vectors[5])
    mix = steering.interpolate(vectors[0], vectors[1], [0.0, 0.25, 1.0])
    np.testing.assert_allclose(mix[1], 0.75 * vectors[0] + 0.25 * vectors[1], rtol=1e-5)
    np.testing.assert_allclose(mix[2], vectors[1], rtol=1e-6)
    with pytest.raises(ValueError, match="no player has the property"):
        steering.property_delta(vectors, np.zeros(10, bool))


def count_captures(games: steering.SelfPlay, per: int) -> np.ndarray:
    """NumPy/python-chess reference: capture share of the steered side's moves."""
    caps, moves = np.zeros(len(games.uci) // per), np.zeros(len(games.uci) // per)
    for g, line in enumerate(games.uci):
        board = chess.Board()
        for uci in line:
            move = chess.Move.from_uci(uci)
            assert move in board.legal_moves  # every sampled move is legal
            if board.turn == games.steered_color[g]:
                caps[g // per] += board.is_capture(move)
                moves[g // per] += 1
            board.push(move)
    return caps / moves


def test_batched_self_play_plays_legal_games_and_properties_match_a_replay():
    model = tiny_model(num_players=3)
    vectors = np.asarray(model.style_vectors())
    games = steering.self_play(model, vectors[:2], vectors[2], games_per_vector=3, max_plies=24)
    assert len(games.uci) == 6 and games.steered_color == [True, False] * 3
    assert all(1 <= len(line) <= 24 for line in games.uci)
    again = steering.self_play(model, vectors[:2], vectors[2], games_per_vector=3, max_plies=24)
    assert again.uci == games.uci  # seeded
    props = steering.game_properties(games, 3)
    np.testing.assert_allclose(props["capture"], count_captures(games, 3))
    assert props["castled"].shape == (2,) and set(props) >= {"knight_move", "castle_ply"}


def test_interpolation_reaches_the_strong_players_agreement_at_lambda_one():
    model = tiny_model(num_players=2)
    planes, mask = random_positions(64, seed=3)
    moves = sample_moves(model, planes, mask, np.ones(64, np.int32))
    positions = {"planes": planes, "legal_mask": mask, "move": moves}
    weak, strong = np.asarray(model.style_vectors())
    agreement = steering.strong_agreement(model, weak, strong, positions, [0.0, 1.0])
    top1, _ = training.score_moves(model, planes, mask, moves, players=np.ones(64, np.int32))
    assert agreement[1] == pytest.approx((top1 == moves).mean())
    assert agreement[1] > agreement[0]


def test_figures_draw_one_line_per_series():
    fig = steering.steering_figure(
        [0, 1, 2], {"capture": [0.1, 0.2, 0.3]}, ylabel="rate", title="t"
    )
    assert isinstance(fig, Figure) and len(fig.axes[0].lines) == 1
    fig = steering.interpolation_figure([0, 1], {"a": [0.1, 0.2], "b": [0.3, 0.4]}, title="t")
    assert len(fig.axes[0].lines) == 2
