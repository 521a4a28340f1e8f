"""Shared fixtures for the chess data-pipeline tests: real PGN files and a tiny dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow_datasets as tfds

from tests.jaxstyle.samples import DATA


@pytest.fixture(scope="session", autouse=True)
def _quiet_tfds():
    tfds.disable_progress_bar()


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Folder of the real PGN files shipped with the tests (see data/README.md)."""
    return DATA


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> dict:
    """A synthetic dataset of 6 players x 6 games, generated and built once per session."""
    from jaxstyle.chess import synthetic, tfds_builder

    root = tmp_path_factory.mktemp("tiny_synthetic")
    config = synthetic.GeneratorConfig(
        num_players=6, games_per_player=6, chunk_games=6, max_plies=60, seed=3
    )
    synthetic.generate(root, config, workers=1, progress=False)
    data_dir = root / "tfds"
    tfds_builder.build_dataset(data_dir, root / "pgn")
    return {"root": root, "pgn": root / "pgn", "data_dir": data_dir, "config": config}
