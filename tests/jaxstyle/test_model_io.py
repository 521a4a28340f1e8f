"""Saving and loading a trained StylePolicy outside the runner."""

from __future__ import annotations

import dataclasses
import json

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxstyle import model_io
from jaxstyle.adapters import SkillConfig
from jaxstyle.model import StyleConfig, StylePolicy
from jaxstyle.policy import PolicyConfig

CONFIG = StyleConfig(
    num_players=3,
    policy=PolicyConfig(blocks=1, filters=16, se_ratio=4, head_channels=4),
    skills=SkillConfig(num_skills=4, num_heads=2, rank=2),
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = StylePolicy(CONFIG, rngs=nnx.Rngs(0))
    model.style.logits[...] = jnp.arange(3 * model.routing_size, dtype=jnp.float32).reshape(3, -1)
    path = model_io.save(model, CONFIG, tmp_path_factory.mktemp("io") / "model")
    return model, path


def test_load_restores_every_parameter_and_the_config(saved):
    model, path = saved
    loaded = model_io.load(path)
    assert loaded.config == CONFIG and model_io.load_config(path) == CONFIG
    chex.assert_trees_all_equal(nnx.state(loaded), nnx.state(model))
    planes, legal = np.zeros((2, 18, 8, 8), np.uint8), np.ones((2, 1880), bool)
    ids = jnp.array([0, 2])
    chex.assert_trees_all_close(
        loaded(planes, legal, players=ids), model(planes, legal, players=ids)
    )


def test_a_checkpoint_with_another_skill_or_head_layout_is_refused_by_name(saved):
    _, path = saved
    heads = dataclasses.replace(CONFIG, skills=dataclasses.replace(CONFIG.skills, num_heads=4))
    with pytest.raises(model_io.LayoutMismatch, match=r"skills.num_heads: 2 \(saved\) != 4"):
        model_io.load(path, expect=heads)
    skills = dataclasses.replace(CONFIG, skills=dataclasses.replace(CONFIG.skills, num_skills=8))
    with pytest.raises(model_io.LayoutMismatch, match="skills.num_skills: 4"):
        model_io.load(path, expect=skills.as_dict())


def test_weights_that_do_not_fit_the_recorded_layout_are_refused(saved, tmp_path):
    _, path = saved
    import shutil

    copy = tmp_path / "tampered"
    shutil.copytree(path, copy)
    data = json.loads((copy / model_io.CONFIG_FILE).read_text())
    data["config"]["skills"]["rank"] = 3
    (copy / model_io.CONFIG_FILE).write_text(json.dumps(data))
    with pytest.raises(model_io.LayoutMismatch, match="do not fit"):
        model_io.load(copy)


def test_missing_and_occupied_paths_give_clear_errors(saved, tmp_path):
    model, path = saved
    with pytest.raises(FileNotFoundError, match="no saved style model"):
        model_io.load(tmp_path / "nothing")
    with pytest.raises(FileExistsError, match="already holds a saved model"):
        model_io.save(model, None, path)
