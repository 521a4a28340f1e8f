"""The toy task's trainer: ``train(config, workdir)`` the way every system's trainer is written.

Test hooks (environment, so they do not change the config a resume checks):
``TOY_STEP_DELAY`` seconds of sleep per step and ``TOY_SAVE_DELAY`` seconds of
sleep after each checkpoint save starts, giving a test time to send signals.
"""

import os
import time
from pathlib import Path

import ml_collections

from experiments.runner import Run, fit
from tests.experiments.toy_task import make_task


def train(config: ml_collections.ConfigDict, workdir: Path) -> dict:
    step_delay = float(os.environ.get("TOY_STEP_DELAY", 0))
    save_delay = float(os.environ.get("TOY_SAVE_DELAY", 0))
    with Run(workdir, config, name="toy") as run:
        state, step_fn, batch_at, _ = make_task(config)

        def slow_step(state, batch):
            time.sleep(step_delay)
            return step_fn(state, batch)

        if save_delay:
            save = run.checkpoints.save

            def slow_save(step, state, extra=None):
                started = save(step, state, extra)
                print(f"toy: saving step {step}", flush=True)
                time.sleep(save_delay)
                return started

            run.checkpoints.save = slow_save
        _, last = fit(run, state, slow_step, batch_at, examples_per_step=config.train.batch_size)
    return last
