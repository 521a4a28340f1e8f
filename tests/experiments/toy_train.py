"""Thin entry point of the toy trainer, shaped like ``experiments/train_<system>.py``.

Exact command::

    python -m tests.experiments.toy_train --config tests/experiments/toy_config.py:tiny
"""

import sys

from experiments import cli

if __name__ == "__main__":
    sys.exit(cli.main("tests.experiments.toy_trainer:train"))
