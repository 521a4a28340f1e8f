"""Balanced per-player batches and the sequential split iterator."""

from __future__ import annotations

import numpy as np
import pytest

from jaxstyle.chess import encoding
from jaxstyle.chess.batching import BalancedBatches, iterate_split, player_ranges


def test_batches_have_documented_shapes_and_the_played_move_is_legal(tiny_synthetic):
    batch = next(BalancedBatches(tiny_synthetic["data_dir"], "train", batch_size=12, seed=1))
    assert batch["planes"].shape == (12, encoding.NUM_PLANES, 8, 8)
    assert batch["planes"].dtype == np.uint8 and set(np.unique(batch["planes"])) <= {0, 1}
    assert batch["legal_mask"].shape == (12, encoding.VOCAB_SIZE)
    assert batch["legal_mask"].dtype == bool
    for key in ("move", "player", "game", "ply", "elo", "opponent_elo"):
        assert batch[key].shape == (12,) and batch[key].dtype == np.int32
    assert batch["legal_mask"][np.arange(12), batch["move"]].all()
    packed = next(BalancedBatches(tiny_synthetic["data_dir"], "train", 12, unpack=False))
    assert packed["planes"].shape == (12, encoding.NUM_PLANES, 8)


def test_players_per_batch_gives_equal_shares_of_distinct_players(tiny_synthetic):
    batches = BalancedBatches(
        tiny_synthetic["data_dir"], "train", batch_size=12, players_per_batch=3, seed=0
    )
    for _ in range(5):
        players, counts = np.unique(next(batches)["player"], return_counts=True)
        assert len(players) == 3 and (counts == 4).all()


def test_sampling_is_uniform_over_players_not_over_positions(tiny_synthetic):
    ranges = player_ranges(tiny_synthetic["data_dir"], "train")
    assert ranges[:, 2].max() > 1.2 * ranges[:, 2].min()  # players differ in positions
    batches = BalancedBatches(tiny_synthetic["data_dir"], "train", batch_size=64, seed=0)
    indices = np.concatenate([batches.sample_indices() for _ in range(300)])
    owner = np.searchsorted(ranges[:, 1], indices, side="right") - 1
    share = np.bincount(owner, minlength=len(ranges)) / len(indices)
    np.testing.assert_allclose(share, 1 / len(ranges), atol=0.01)
    assert ((indices >= ranges[owner, 1]) & (indices < ranges[owner, 1] + ranges[owner, 2])).all()


def test_same_seed_gives_the_same_stream(tiny_synthetic):
    a = BalancedBatches(tiny_synthetic["data_dir"], "train", 8, players_per_batch=2, seed=5)
    b = BalancedBatches(tiny_synthetic["data_dir"], "train", 8, players_per_batch=2, seed=5)
    for _ in range(3):
        np.testing.assert_array_equal(a.sample_indices(), b.sample_indices())


def test_restricting_to_some_players_only_samples_them(tiny_synthetic):
    batches = BalancedBatches(tiny_synthetic["data_dir"], "query", 16, players=[1, 4], seed=2)
    assert set(next(batches)["player"].tolist()) <= {1, 4}


def test_bad_batch_geometry_is_rejected(tiny_synthetic):
    with pytest.raises(ValueError, match="must divide"):
        BalancedBatches(tiny_synthetic["data_dir"], "train", 10, players_per_batch=3)
    with pytest.raises(ValueError, match="players_per_batch=12 > 6 players"):
        BalancedBatches(tiny_synthetic["data_dir"], "train", 12, players_per_batch=12)


def test_iterate_split_yields_every_record_once_in_order(tiny_synthetic):
    ranges = player_ranges(tiny_synthetic["data_dir"], "reference")
    batches = list(iterate_split(tiny_synthetic["data_dir"], "reference", batch_size=50))
    players = np.concatenate([b["player"] for b in batches])
    assert len(players) == ranges[:, 2].sum()
    np.testing.assert_array_equal(players, np.repeat(ranges[:, 0], ranges[:, 2]))
    assert all(len(b["move"]) == 50 for b in batches[:-1])
