"""The MoE LM trainer end to end on the ``tiny`` config: CLI, exact resume, two processes."""

import json
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.configs.moe import get_config
from experiments.trainers import moe as trainer
from tests.multiprocess import REPO_ROOT, run_distributed


def _records(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_tiny_run_logs_layer_metrics_and_resumes_exactly_after_losing_its_last_checkpoint(
    tmp_path,
):
    config = get_config("tiny")
    full = tmp_path / "full"
    last = trainer.train(config, full)
    for key in ("loss", "max_vio", "seu", "routing_entropy", "eval/val_loss", "eval/pes_min",
                "eval/tokens_per_s", "eval/mfu"):  # fmt: skip
        assert np.isfinite(last[key]), key
    assert last["loss"] < 5.6  # below ln 256 ≈ 5.55 + z-loss after 8 steps
    # A crash after the step-4 checkpoint: drop the final checkpoint and resume.
    crashed = tmp_path / "crashed"
    shutil.copytree(full, crashed)
    shutil.rmtree(crashed / "checkpoints" / str(config.train.num_steps))
    resumed = trainer.train(config, crashed)
    for key in ("loss", "ce", "grad_norm", "eval/val_loss", "eval/pes_min"):
        assert resumed[key] == pytest.approx(last[key], rel=1e-6, abs=1e-7), key
    steps = [r["step"] for r in _records(crashed)]
    assert steps == sorted(set(steps)) and steps[-1] == config.train.num_steps


def test_bad_corpus_directory_ends_the_command_with_one_error_line(tmp_path):
    missing = tmp_path / "no-such-corpus"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.train_moe", "--config",
         "experiments/configs/moe.py:tiny", f"--config.data.corpus={missing}",
         "--workdir", str(tmp_path / "run")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(missing) in lines[0] and "does not exist" in lines[0]


# This test is compile-bound (three processes compile the step; three steps run in well under
# a second): LLVM optimisation level 0 halves XLA's compile time.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _train_losses(num_steps: int) -> list[float]:
    config = get_config("tiny")
    config.mesh = {"data": 2, "expert": 4}
    # One (MoE) block: the expert-parallel exchange across processes is per layer, and each
    # of the three processes compiles this step, so a second block only adds compile time.
    config.model.num_layers = 1
    from jaxcommon import make_mesh  # noqa: PLC0415

    mesh = make_mesh(dict(config.mesh), axis_types="auto")
    task, step, _ = trainer.compiled(
        trainer.lm_config(config), trainer.optim_config(config), mesh, "lbl", 1e-5
    )
    train_data, _ = trainer.load_data(config)
    state, losses, compiled_step = task.init(config.seed), [], None
    for s in range(num_steps):
        batch = trainer.put_batch(train_data.batch(config.seed, s, config.train.batch_size), mesh)
        if compiled_step is None:  # the trainer's jitted step, compiled the same in every process
            compiled_step = step.lower(state, batch).compile(FAST_COMPILE)
        state, metrics = compiled_step(state, batch)
        losses.append(float(jax.device_get(metrics["loss"])))
    return losses


WORKER = """
import json
import jaxcommon
jaxcommon.initialize_from()
from tests.jaxmoe.test_train_moe import _train_losses
print(json.dumps(_train_losses(3)))
"""


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_of_four_devices_train_to_the_losses_of_one_eight_device_process():
    outputs = run_distributed(WORKER, num_processes=2, local_devices=4, timeout=600)
    per_process = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    single = _train_losses(3)
    for losses in per_process:
        np.testing.assert_allclose(losses, single, rtol=1e-5)
    assert len(single) == 3 and np.all(np.isfinite(single)) and len(set(single)) == 3


def test_steps_to_reach_interpolates_between_evaluations_and_reports_never():
    from experiments.reproduce_moe import steps_to_reach  # noqa: PLC0415

    steps = np.array([10.0, 20.0, 30.0])
    curve = np.array([3.0, 2.0, 1.0])
    assert steps_to_reach(steps, curve, 1.5) == pytest.approx(25.0)
    assert steps_to_reach(steps, curve, 5.0) == 10.0
    assert steps_to_reach(steps, curve, 0.5) is None
