"""A tiny regression experiment used to test the runner and the command line.

It has the config schema every experiment shares (``seed``, ``mesh``,
``optim.learning_rate``, ``train.{num_steps, log_every, checkpoint_every,
max_to_keep, on_nonfinite, eval_every}``) and a ``tiny`` variant. Exact command::

    python -m tests.experiments.toy_train --config tests/experiments/toy_config.py:tiny
"""

import ml_collections

from experiments.configs.common import base_train

VARIANTS = {
    "small": {"width": 4, "num_steps": 6},
    "wide": {"width": 16, "num_steps": 6},
    "tiny": {"width": 4, "num_steps": 30, "checkpoint_every": 10},
}


def get_config(variant: str = "small") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(
            f"unknown variant {variant!r} of toy config; choose one of {list(VARIANTS)}"
        )
    size = VARIANTS[variant]
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.mesh = {"data": -1}
    config.model = ml_collections.ConfigDict({"width": size["width"]})
    config.optim = ml_collections.ConfigDict({"learning_rate": 0.05})
    config.train = base_train(
        num_steps=size["num_steps"],
        log_every=1,
        checkpoint_every=size.get("checkpoint_every", 2),
        max_to_keep=3,
        batch_size=16,
    )
    # Test-only: from this step on (if > 0) the batch's targets are inf (a non-finite loss).
    config.nan_at_step = 0
    return config
