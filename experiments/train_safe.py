"""Train progressive-safeguard Q-learning on the gridworld (faithful and corrected). Exact command:

    python -m experiments.train_safe --config experiments/configs/safe.py:cpu

(``make train-safe``; ends with one JSON line of means over seeds, see
experiments/configs/safe.py).
"""

import sys

from experiments import cli

if __name__ == "__main__":
    sys.exit(cli.main("experiments.trainers.safe:train", subruns=True))  # one run per mode
