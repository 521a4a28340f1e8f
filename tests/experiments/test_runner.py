"""Run directories, resume-equals-uninterrupted, metrics, plots and bad run dirs."""

import json

import jax
import numpy as np
import pytest

from experiments.checkpoints import CheckpointMismatch
from experiments.runner import Run, RunError, fit
from tests.experiments.toy_config import get_config
from tests.experiments.toy_task import make_task


def train(workdir, config, fail_at_step=None):
    run = Run(workdir, config, name="toy")
    state, step_fn, batch_at, calls = make_task(config, fail_at_step)
    try:
        state, last = fit(run, state, step_fn, batch_at)
    finally:
        run.close()
    return state, last, calls["n"]


def params_of(state):
    return jax.tree.leaves(jax.device_get(state))


def test_run_directory_holds_config_metrics_tensorboard_plot_and_checkpoints(tmp_path):
    _, last, _ = train(tmp_path / "run", get_config())
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "config.json").read_text())["model"]["width"] == 4
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[-1]["loss"] == pytest.approx(last["loss"])
    assert records[-1]["loss"] < records[0]["loss"]
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "plots" / "metrics.png").stat().st_size > 1000
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()) == [
        "2",
        "4",
        "6",
    ]


def test_resumed_run_ends_with_same_metrics_and_params_as_uninterrupted(tmp_path):
    config = get_config()
    full_state, full_last, _ = train(tmp_path / "full", config)

    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "resumed", config, fail_at_step=3)  # checkpoint at 2, dies in step 4
    state, last, steps_run = train(tmp_path / "resumed", config)

    assert steps_run == 4  # steps 3..6 only: it resumed from the checkpoint at step 2
    assert last == full_last
    for a, b in zip(params_of(state), params_of(full_state), strict=True):
        np.testing.assert_array_equal(a, b)
    records = [
        json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    discarded = tmp_path / "resumed" / "metrics.discarded.jsonl"
    assert [json.loads(x)["step"] for x in discarded.read_text().splitlines()] == [3]


def test_longer_run_on_finished_directory_continues_from_last_step(tmp_path):
    config = get_config()
    train(tmp_path / "run", config)
    config.unlock()
    config.train.num_steps = 8
    _, _, steps_run = train(tmp_path / "run", config)
    assert steps_run == 2


def test_workdir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "notadir"
    path.write_text("keep me")
    with pytest.raises(RunError, match="is a file, not a directory"):
        Run(path, get_config(), name="toy")
    assert path.read_text() == "keep me"


def test_run_directory_of_another_config_is_refused_and_left_untouched(tmp_path):
    train(tmp_path / "run", get_config("small"))
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*")}
    with pytest.raises(RunError, match=r"another config \(model.width: 4 -> 16\)"):
        Run(tmp_path / "run", get_config("wide"), name="toy")
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*")} == before


def test_non_empty_directory_without_a_run_is_refused(tmp_path):
    (tmp_path / "stuff.txt").write_text("x")
    with pytest.raises(RunError, match="not empty and holds no run"):
        Run(tmp_path, get_config(), name="toy")


def test_checkpoint_from_another_config_is_refused(tmp_path):
    train(tmp_path / "small", get_config("small"))
    wide = get_config("wide")
    run = Run(tmp_path / "wide", wide, name="toy")
    run.close()
    (tmp_path / "small" / "checkpoints").rename(tmp_path / "wide" / "checkpoints")
    state, step_fn, batch_at, _ = make_task(wide)
    with Run(tmp_path / "wide", wide, name="toy") as run:
        with pytest.raises(CheckpointMismatch, match="made with another config"):
            fit(run, state, step_fn, batch_at)
