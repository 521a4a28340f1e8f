"""Train one arm of the byte-level MoE LM. Exact command:

    python -m experiments.train_moe --config experiments/configs/moe.py:cpu

(``make train-moe``; ``--config.arm=lbl`` etc. picks the arm, see experiments/configs/moe.py).
"""

import sys

from experiments import cli

if __name__ == "__main__":
    sys.exit(cli.main("experiments.trainers.moe:train"))
