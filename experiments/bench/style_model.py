"""Style-vector model benchmark (JSON on stdout): ``python -m experiments.bench.style_model``.

Merged into ``make bench-style`` by :mod:`experiments.bench.style`;
``python -m experiments.bench.style --only model`` runs just these keys. Keys:

  adapter_over_base        forward+backward of a mixed-player batch through 4 ``Linear(512,512)``
                           with MHR adapters (r=8, s=8, h=4; 1000 players in 4096 rows; grads
                           of skills + style table, the base frozen: a stage-(b) step) ÷ the
                           same layers alone (grads of their weights: a stage-(a) step).
                           Target ≤ 1.3.
  adapter_over_base_all_grads  the same, the adapted step also taking the base weights'
                           grads (both sides then compute every matmul's weight gradient).
  loop_over_batched        the same forward with a Python loop over players: for each player,
                           gather its rows and run them through a jitted stack that mixes that
                           player's adapter ``A_α, B_α`` and applies ``W x + (x A_α) B_α / r``
                           (one dispatch per player, two compiled row counts) ÷ the batched
                           skill-space path. Target ≥ 10. It grows with the players per batch
                           (the loop pays per player, the batched path per row).
  fewshot_100_players_s    seconds of ``fit_style_vectors`` for 100 new players at once (50
                           positions each, 100 steps of 512 positions; ``--quick``: 10
                           positions, 20 steps) on the ``cpu`` chess model, compile included.
  style_table_47864_mb     float32 style table of 47,864 players at the ``cpu`` config's R
                           (``…_train_mb``: with Adam's two moments).
  table_47864_over_400     multitask step with a 47,864-player table (players drawn across the
                           whole table) ÷ the same step with a 400-player table.
  table_47864_step_s       that step's seconds (absolute, so noisy on a shared machine).
  inference_positions_per_s  ``StylePolicy`` forward, mixed players, positions per second.

Every ratio is the spread (median/min/max) of per-repeat ratios from
:func:`experiments.bench.timing.side_by_side`.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench.report import default_out, emit
from experiments.bench.timing import progress, rates, ratio, side_by_side, spread

TABLE_PLAYERS = 47_864


def _linear_stack(quick: bool):
    """4 Linear(512, 512) as MHR layers, ``rows`` examples of ``players`` players."""
    from flax import nnx

    from jaxstyle import adapters
    from jaxstyle.adapters import SkillConfig

    rows, players = (1024, 256) if quick else (4096, 1000)
    config = SkillConfig(num_skills=8, num_heads=4, rank=8)

    class Stack(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([nnx.Linear(512, 512, rngs=rngs) for _ in range(4)])

        def __call__(self, x):
            for layer in self.layers:
                x = jax.nn.relu(layer(x))
            return x

    model, n = adapters.wrap(Stack(nnx.Rngs(0)), config, rngs=nnx.Rngs(1))
    rng = np.random.default_rng(0)
    for _, leaf in nnx.iter_graph(model):
        if isinstance(leaf, adapters.Skill):
            leaf[...] = jnp.asarray(rng.normal(0, 0.05, leaf.shape), jnp.float32)
    table = jnp.asarray(rng.normal(0, 1, (players, config.block_size)), jnp.float32)
    ids = jnp.asarray(rng.permutation(np.arange(rows) % players), jnp.int32)
    x = jnp.asarray(rng.normal(size=(rows, 512)), jnp.float32)
    return model, n, config, table, ids, x


def linear_ratios(quick: bool, repeats: int) -> dict:
    from flax import nnx

    from jaxstyle import adapters

    model, n, config, table, ids, x = _linear_stack(quick)
    graphdef, skills, base = nnx.split(model, adapters.Skill, nnx.Param)

    def forward(skills, base, z, x, mixed=True):
        net = nnx.merge(graphdef, skills, base)
        weights = adapters.mixing_weights(z, config, n) if mixed else None
        with adapters.mixing(weights):
            return net(x)

    @jax.jit
    def adapter_step(skills, table):
        loss = lambda s, t: (forward(s, base, t[ids], x) ** 2).mean()  # noqa: E731
        return jax.grad(loss, argnums=(0, 1))(skills, table)

    @jax.jit
    def adapter_all_step(skills, base, table):
        loss = lambda s, b, t: (forward(s, b, t[ids], x) ** 2).mean()  # noqa: E731
        return jax.grad(loss, argnums=(0, 1, 2))(skills, base, table)

    @jax.jit
    def base_step(base):
        return jax.grad(lambda b: (forward(skills, b, None, x, mixed=False) ** 2).mean())(base)

    progress(f"adapter vs base: fwd+bwd, {x.shape[0]} rows, {table.shape[0]} players")
    times = side_by_side(
        {
            "adapters": lambda: adapter_step(skills, table),
            "adapters_all": lambda: adapter_all_step(skills, base, table),
            "base": lambda: base_step(base),
        },
        repeats,
    )
    out = {
        "linear_rows": int(x.shape[0]),
        "linear_players": int(table.shape[0]),
        "adapter_over_base": ratio(times, "adapters", "base"),
        "adapter_over_base_all_grads": ratio(times, "adapters_all", "base"),
    }

    # A Python loop over players: each player's adapter materialised, its rows run alone.
    players = table.shape[0]
    ids_np = np.asarray(ids)
    order = [np.flatnonzero(ids_np == p) for p in range(players)]
    stack = [(layer.base, layer.a[...], layer.b[...]) for layer in model.layers]

    @jax.jit
    def one_player(z_row, xs):
        alpha = adapters.mixing_weights(z_row[None], config, n)[0, 0]  # [h, s]
        for lin, a, b in stack:
            full_a = jnp.einsum("hs,hsdr->hdr", alpha, a).reshape(-1, a.shape[-1])
            full_b = (
                jnp.einsum("hs,hsro->hro", alpha, b).transpose(1, 0, 2).reshape(a.shape[-1], -1)
            )
            xs = jax.nn.relu(lin(xs) + (xs @ full_a) @ full_b / config.rank)
        return xs

    def loop():
        return [one_player(table[p], x[rows]) for p, rows in enumerate(order)]

    @jax.jit
    def batched(skills, table):
        return forward(skills, base, table[ids], x)

    progress(f"loop over {players} players vs batched forward")
    times = side_by_side(
        {"loop": loop, "batched": lambda: batched(skills, table)}, max(2, repeats // 2)
    )
    got = np.concatenate([np.asarray(r) for r in loop()])
    want = np.asarray(batched(skills, table))[np.concatenate(order)]
    out["loop_matches_batched_max_abs"] = float(np.abs(got - want).max())
    out["loop_over_batched"] = ratio(times, "loop", "batched")
    return out


def _chess_model(players: int):
    from flax import nnx

    from experiments.configs.style import get_config
    from experiments.trainers.style import style_config
    from jaxstyle.model import StylePolicy

    return StylePolicy(style_config(get_config("cpu"), players), rngs=nnx.Rngs(0))


def _chess_batch(size: int, players: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    legal = rng.random((size, 1880)) < 0.02
    legal[:, 0] = True
    return {
        "planes": jnp.asarray(rng.integers(0, 2, (size, 18, 8, 8)), jnp.uint8),
        "legal_mask": jnp.asarray(legal),
        "move": jnp.asarray(np.zeros(size, np.int32)),
        "player": jnp.asarray(rng.integers(0, players, size), jnp.int32),
    }


def chess_numbers(quick: bool, repeats: int) -> dict:
    from jaxstyle import training

    out = {}
    big = _chess_model(TABLE_PLAYERS)
    r = big.routing_size
    out["style_table_47864_mb"] = round(TABLE_PLAYERS * r * 4 / 2**20, 3)
    out["style_table_47864_train_mb"] = round(3 * TABLE_PLAYERS * r * 4 / 2**20, 3)
    out["routing_size"] = r

    batch_size = 64 if quick else 256
    steps = {}
    for name, model in (("table_47864", big), ("table_400", _chess_model(400))):
        tx = training.multitask_optimizer(1e-3)
        graphdef, state = training.init_state(model, "multitask", tx)
        step = jax.jit(training.multitask_step(graphdef, tx))
        batch = _chess_batch(batch_size, model.num_players)
        steps[name] = (step, state, batch)
    progress(f"multitask step, {TABLE_PLAYERS} vs 400 players, batch {batch_size}")
    times = side_by_side(
        {name: (lambda s=s: s[0](s[1], s[2])) for name, s in steps.items()}, max(2, repeats // 2)
    )
    out["table_47864_over_400"] = ratio(times, "table_47864", "table_400")
    out["table_47864_step_s"] = spread(times["table_47864"])

    model = _chess_model(400)
    infer = _chess_batch(1024, 400, seed=1)
    graphdef, params = training.split_model(model)

    @jax.jit
    def forward(params, batch):
        m = training.merge_model(graphdef, params)
        return m(batch["planes"], batch["legal_mask"], players=batch["player"]).argmax(-1)

    progress("inference, 1024 positions of mixed players")
    times = side_by_side({"inference": lambda: forward(params, infer)}, max(2, repeats // 2))
    out["inference_positions_per_s"] = rates(times, {"inference": 1024})["inference"]

    new_players, per_player = 100, (10 if quick else 50)
    fit = _chess_batch(new_players * per_player, 400, seed=2)
    group = np.repeat(np.arange(new_players), per_player)
    fit_steps = 20 if quick else 100

    def fewshot():
        return training.fit_style_vectors(
            model, fit["planes"], fit["legal_mask"], fit["move"], group, new_players,
            steps=fit_steps, learning_rate=0.1, key=jax.random.key(0), batch_size=512,
        )  # fmt: skip

    progress(f"few-shot: {new_players} players × {per_player} positions, {fit_steps} steps")
    times = side_by_side({"fewshot": fewshot}, 1, warm=False)  # first call compiles
    out["fewshot_100_players_s"] = spread(times["fewshot"])
    out["fewshot_setup"] = {"positions_per_player": per_player, "steps": fit_steps}
    return out


def run(quick: bool = False, repeats: int | None = None) -> dict:
    """All keys of the module docstring (``quick``: smaller batches and fewer repeats)."""
    repeats = repeats or (3 if quick else 7)
    result = {"backend": jax.default_backend(), "quick": quick}
    result.update(linear_ratios(quick, repeats))
    result.update(chess_numbers(quick, repeats))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.style_model")
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds, for tests)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default=default_out("style_model"), help="JSON file ('' = none)")
    args = parser.parse_args(argv)
    emit(run(args.quick, args.repeats), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
