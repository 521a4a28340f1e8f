"""Pieces every experiment config shares (the schema: experiments/README.md)."""

import ml_collections


def base_train(
    *,
    num_steps: int,
    log_every: int,
    checkpoint_every: int,
    max_to_keep: int = 3,
    on_nonfinite: str = "stop",
    eval_every: int = 0,
    **extra,
) -> ml_collections.ConfigDict:
    """The runner's ``train`` section, plus the experiment's own fields in ``extra``.

    ``eval_every=0`` evaluates only at the end; ``on_nonfinite`` is ``"stop"`` or ``"skip"``;
    ``extra`` holds per-experiment fields such as ``batch_size``.
    """
    return ml_collections.ConfigDict(
        {
            "num_steps": num_steps,
            "log_every": log_every,
            "checkpoint_every": checkpoint_every,
            "max_to_keep": max_to_keep,
            "on_nonfinite": on_nonfinite,
            "eval_every": eval_every,
            **extra,
        }
    )
