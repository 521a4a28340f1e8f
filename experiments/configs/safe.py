"""Progressive-safeguard tabular Q-learning on the paper's gridworld. Exact command:

    python -m experiments.train_safe --config experiments/configs/safe.py:cpu

(``make train-safe``). Runs every mode of ``modes`` (``faithful``: the authors' protocol with its
quirks; ``corrected``: equal stages, the update done right; ``zero_shot``: the final safeguard
from scratch for all episodes, corrected learner, run as four equal stages of that safeguard;
``zero_shot_faithful``: the same with the authors' learner) for ``num_seeds`` seeds vmapped, one
stage per runner step, and prints one JSON line of means over seeds. Variants: ``tiny`` (tests,
seconds), ``cpu`` (the default: the paper's 5000 episodes x 20 seeds, about 1 min on 2 cores;
the protocol's seed-to-seed spread is wide -- 400 to 4400 violating episodes -- so 20 seeds
rather than the authors' 4), ``gpu`` (one accelerator host: 256 seeds vmapped).
"""

import ml_collections

from experiments.configs.common import base_train

MODES = ("faithful", "corrected", "zero_shot", "zero_shot_faithful")

_VARIANTS = {
    "tiny": dict(num_seeds=2, num_episodes=40, max_steps=100, eval_episodes=10, unroll=1),
    "cpu": dict(num_seeds=20, num_episodes=5000, max_steps=1000, eval_episodes=100, unroll=1),
    "gpu": dict(num_seeds=256, num_episodes=5000, max_steps=1000, eval_episodes=100, unroll=4),
}


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
    if variant not in _VARIANTS:
        raise ValueError(
            f"unknown variant {variant!r} of safe config; choose one of {list(_VARIANTS)}"
        )
    v = _VARIANTS[variant]
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.num_seeds = v["num_seeds"]
    c.modes = "faithful,corrected"  # comma-separated subset of MODES
    c.specs = "sg0,sg1,sg2,sg3"  # the curriculum, one shipped spec per stage
    c.mesh = {"seeds": -1}  # the runner's mesh; seeds are vmapped on the default device
    c.qlearning = ml_collections.ConfigDict(
        {
            "epsilon": 0.1,
            "gamma": 0.9,
            "max_steps": v["max_steps"],  # steps per episode
            "num_episodes": v["num_episodes"],
            # steps unrolled per scan iteration: on XLA:CPU 1 and 4 run alike and 16 is slower;
            # the gpu variant keeps 4, not measured on a GPU
            "unroll": v["unroll"],
        }
    )
    c.optim = ml_collections.ConfigDict({"learning_rate": 0.9})  # the Q-learning alpha
    c.eval = ml_collections.ConfigDict({"num_episodes": v["eval_episodes"]})
    # one runner step = one safeguard stage (the zero-shot mode has one stage)
    c.train = base_train(num_steps=4, log_every=1, checkpoint_every=1, max_to_keep=4, eval_every=1)
    return c
