"""A tiny regression experiment used to test the runner and the command line."""

import ml_collections

VARIANTS = {"small": {"width": 4}, "wide": {"width": 16}}


def get_config(variant: str = "small") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(
            f"unknown variant {variant!r} of toy config; choose one of {list(VARIANTS)}"
        )
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.mesh = {"data": -1}
    config.model = ml_collections.ConfigDict({"width": VARIANTS[variant]["width"]})
    config.optim = ml_collections.ConfigDict({"learning_rate": 0.05})
    config.train = ml_collections.ConfigDict(
        {"num_steps": 6, "log_every": 1, "checkpoint_every": 2, "batch_size": 16}
    )
    return config
