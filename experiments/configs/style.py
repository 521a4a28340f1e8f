"""Style vectors (MHR skill adapters over a Maia-like policy) on synthetic chess players.

Exact command (the default of ``make train-style``, after ``make data-style``)::

    python -m experiments.train_style --config experiments/configs/style.py:cpu

Variants: ``tiny`` (tests; a dataset given with ``--config.data.dir``), ``quick`` (the quick
path of ``make reproduce``, ~50 players; also needs ``data.dir``), ``cpu`` (over
``data/synthetic``; 13 min 26 s on 2 idle cores, measured inside ``make reproduce FULL=1`` on
its 400-player data: (a) 3:51, (b) 7:10, (c) 1:29, export and evaluation 0:56; 27 min 16 s on
a loaded machine), ``gpu`` (one accelerator host).

Stages: ``train.num_steps`` of (a) pretraining, ``multitask.num_steps`` of (b) skills + style
table, ``fewshot.num_steps`` of (c) routing-only fitting for ``data.holdout_players`` unseen
players from ``fewshot.games`` of their games each. Learning rates: ``optim.learning_rate``
(a), ``optim.multitask_learning_rate`` (b; the table at ``optim.routing_multiplier ×``),
``fewshot.learning_rate`` (c).
"""

from __future__ import annotations

import ml_collections

from experiments.configs.common import base_train


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
    if variant not in ("tiny", "quick", "cpu", "gpu"):
        raise ValueError(f"unknown variant {variant!r}; use tiny, quick, cpu or gpu")
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.mesh = {"data": -1}

    c.data = ml_collections.ConfigDict()
    c.data.dir = "data/synthetic"  # make data-style output: tfds/, players.json, pgn/
    c.data.holdout_players = 40  # unseen in (a) and (b); fitted few-shot in (c)

    c.model = ml_collections.ConfigDict()
    c.model.blocks = 4
    c.model.filters = 32
    c.model.se_ratio = 8
    c.model.head_channels = 16
    c.model.head = "from_to"  # bilinear from/to-square head ("flat": Maia's Linear head)
    c.model.num_skills = 8
    c.model.num_heads = 4
    c.model.rank = 4
    c.model.shared_routing = True
    c.model.conv_kernel = "full"
    c.model.adapt = "blocks+head"  # residual convs + the head's from/to convs

    c.train = base_train(  # stage (a)
        num_steps=900, log_every=50, checkpoint_every=300, max_to_keep=2, batch_size=256
    )

    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 2e-3
    c.optim.warmup_steps = 100
    c.optim.multitask_learning_rate = 5e-3
    c.optim.routing_multiplier = 2.0

    c.multitask = ml_collections.ConfigDict()
    c.multitask.num_steps = 800
    c.multitask.players_per_batch = 64  # balanced: batch_size / players_per_batch each

    c.fewshot = ml_collections.ConfigDict()
    c.fewshot.num_steps = 200
    c.fewshot.games = 10  # k games per unseen player
    c.fewshot.batch_size = 256
    c.fewshot.learning_rate = 0.05

    c.eval = ml_collections.ConfigDict()
    c.eval.players = 120  # trained players evaluated (all unseen players always are)
    c.eval.positions_per_player = 60  # first positions of each player's query games
    c.eval.ceiling = True  # the synthetic players' own policy (needs players.json)

    if variant == "tiny":
        c.data.dir = ""  # tests pass --config.data.dir
        c.data.holdout_players = 2
        c.model.update(blocks=1, filters=16, se_ratio=4, head_channels=4, num_skills=4, num_heads=2)
        c.model.rank = 2
        c.train.update(num_steps=6, batch_size=16, log_every=2, checkpoint_every=3)
        c.optim.warmup_steps = 2
        c.multitask.update(num_steps=6, players_per_batch=2)
        c.fewshot.update(num_steps=4, games=2, batch_size=16)
        c.eval.update(players=4, positions_per_player=8)
    elif variant == "quick":  # make reproduce's quick path (about 50 players)
        c.data.dir = ""
        c.data.holdout_players = 5
        c.model.update(blocks=2, filters=32)
        c.train.update(num_steps=400, batch_size=128, checkpoint_every=200, log_every=25)
        c.optim.warmup_steps = 40
        c.multitask.update(num_steps=400, players_per_batch=16)
        c.fewshot.update(num_steps=150, games=5, batch_size=256)
        c.eval.update(players=45, positions_per_player=40)
    elif variant == "gpu":
        c.model.update(blocks=6, filters=128, head_channels=32, num_skills=16, num_heads=8)
        c.model.rank = 8
        c.train.update(num_steps=20_000, batch_size=1024, checkpoint_every=2000, log_every=100)
        c.multitask.update(num_steps=20_000, players_per_batch=256)
        c.fewshot.update(num_steps=1000, games=30, batch_size=1024)
        c.eval.update(players=400, positions_per_player=200)
    return c
