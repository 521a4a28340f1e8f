"""Train style vectors (stages a–c + move-matching evaluation) on a chess-positions dataset.

Exact command: python -m experiments.train_style --config experiments/configs/style.py:cpu
(``make train-style``; build the default dataset first with ``make data-style``).
"""

import sys

from experiments import cli

if __name__ == "__main__":
    sys.exit(cli.main("experiments.trainers.style:train"))
