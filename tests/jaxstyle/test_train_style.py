"""The style trainer end to end on a tiny synthetic dataset: stages, export, evaluation, resume."""

from __future__ import annotations

import subprocess
import sys

import chex
import numpy as np
import pytest
from flax import nnx

from experiments.configs.style import get_config
from experiments.runner import RunError

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def tiny_config(data_dir):
    config = get_config("tiny")
    config.data.dir = str(data_dir)
    return config


def test_thin_main_reports_a_missing_config_in_one_line_without_training():
    result = subprocess.run(
        [sys.executable, "-m", "experiments.train_style"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: missing --config")


def test_missing_dataset_and_bad_holdout_are_clear_errors(tiny_synthetic, tmp_path):
    from experiments.trainers import style

    with pytest.raises(RunError, match="config.data.dir is empty"):
        style.load_data(get_config("tiny"))
    with pytest.raises(RunError, match="no prepared chess dataset"):
        style.load_data(tiny_config(tmp_path))
    config = tiny_config(tiny_synthetic["root"])
    config.data.holdout_players = 6
    with pytest.raises(RunError, match="leaves no training player"):
        style.load_data(config)
    config = tiny_config(tiny_synthetic["root"])
    config.optim.warmup_steps = config.train.num_steps
    with pytest.raises(RunError, match="warmup_steps=6 must be below train.num_steps=6"):
        style.train(config, tmp_path / "warmup")


@pytest.mark.slow
def test_tiny_run_trains_all_stages_exports_evaluates_and_resumes(tiny_synthetic, tmp_path):
    from experiments.trainers import style
    from jaxstyle import model_io

    config = tiny_config(tiny_synthetic["root"])
    results = style.train(config, tmp_path / "run")
    metrics = results["metrics"]
    for group, players in (("trained", 4), ("unseen", 2)):
        m = metrics[group]
        assert m["players"] == players
        for key in ("base_top1", "style_top1", "ceiling_top1", "ceiling_expected_top1"):
            assert 0.0 <= m[key] <= 1.0, (group, key)
    assert set(results["stages"]) == {"pretrain", "multitask", "fewshot"}
    for stage in style.STAGES:
        assert (tmp_path / "run" / stage / "checkpoints").is_dir()

    model = model_io.load(results["model_path"])
    assert model.num_players == 6 and model.routing_size == results["routing_size"]
    vectors = np.load(f"{results['model_path']}/fewshot_vectors.npz")
    assert vectors["vectors"].shape == (2, model.routing_size)

    again = style.train(config, tmp_path / "run")  # every stage restores its last checkpoint
    assert again["metrics"] == metrics
    chex.assert_trees_all_equal(nnx.state(model_io.load(again["model_path"])), nnx.state(model))

    other = tiny_config(tiny_synthetic["root"])
    other.model.rank = 4
    with pytest.raises(RunError, match="another config"):
        style.train(other, tmp_path / "run")
