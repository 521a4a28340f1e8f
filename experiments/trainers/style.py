"""Style vectors on a chess-positions dataset: stages (a)–(c), export, move-matching evaluation.

``train(config, workdir)`` records the config in ``workdir/config.json`` and runs, each
through the runner in its own sub-directory (orbax checkpoints, exact resume, non-finite
guard):

- ``a_pretrain/``  — (a) behaviour cloning of the base network on the training players;
- ``b_multitask/`` — (b) skills + style table, base frozen, balanced batches over players
  (``multitask.players_per_batch`` distinct players per batch; the table is sharded by rows
  over the mesh's ``data`` axis when there are several devices);
- ``c_fewshot/``   — (c) new style vectors for ``data.holdout_players`` unseen players, fitted
  from their first ``fewshot.games`` training games, everything else frozen.

Then it exports the model with :func:`jaxstyle.model_io.save` to ``workdir/model/`` (plus
``fewshot_vectors.npz``) and evaluates top-1 legal-masked move matching on the players'
query games: the base network, the style-vector model, and — for synthetic data — each
player's own policy (the ceiling: the agreement of its most likely move, and the expected
top-1 accuracy ``E[max_m P(m|x,p)]``), with the per-player gain over the base. The result is
written to ``workdir/results.json`` and returned.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from experiments.rundir import check_workdir, config_to_dict, write_config
from experiments.runner import Run, RunError, fit, guarded_update
from jaxstyle import adapters, model_io, training
from jaxstyle.adapters import SkillConfig
from jaxstyle.model import StyleConfig, StylePolicy
from jaxstyle.policy import PolicyConfig

STAGES = ("a_pretrain", "b_multitask", "c_fewshot")


# ---------------------------------------------------------------------------------------
# Data


@dataclasses.dataclass
class Data:
    """The prepared dataset: where it is, its players, and who is held out for stage (c)."""

    root: Path  # make_dataset --out folder (players.json, pgn/, corpus.json.zst, tfds/)
    tfds_dir: Path
    players: list[str]
    ranges: dict[str, np.ndarray]  # split -> int64 [n, 3] (player, start, count)
    train_ids: np.ndarray
    holdout_ids: np.ndarray


def load_data(config: ml_collections.ConfigDict) -> Data:
    """Opens ``config.data.dir`` (a ``make_dataset`` folder or its ``tfds/``)."""
    from jaxstyle.chess import batching, tfds_builder
    from jaxstyle.chess.sources import DataError

    if not config.data.dir:
        raise RunError("config.data.dir is empty; pass --config.data.dir=PATH (make data-style)")
    root = Path(config.data.dir).expanduser().resolve()
    tfds_dir = root / "tfds" if (root / "tfds").is_dir() else root
    if not tfds_builder.is_prepared(tfds_dir):
        raise RunError(f"no prepared chess dataset in {root}; build it first: make data-style")
    try:
        meta = tfds_builder.load_builder(tfds_dir).info.metadata
        ranges = {s: batching.player_ranges(tfds_dir, s) for s in ("train", "query")}
    except DataError as err:
        raise RunError(str(err)) from None
    players = list(meta["players"])
    with_train = np.unique(ranges["train"][:, 0])
    with_query = set(ranges["query"][:, 0].tolist())
    eligible = np.array([p for p in with_train if p in with_query], np.int64)
    holdout = int(config.data.holdout_players)
    if holdout >= len(eligible):
        raise RunError(
            f"data.holdout_players={holdout} leaves no training player "
            f"({len(eligible)} players have train and query games)"
        )
    rng = np.random.default_rng([config.seed, 7])
    held = np.sort(rng.choice(eligible, size=holdout, replace=False)) if holdout else eligible[:0]
    train_ids = np.setdiff1d(with_train, held)
    return Data(root, tfds_dir, players, ranges, train_ids, held)


class Sampler:
    """``batch_at(step)``: a pure function of (seed, stage, step), so resume is exact.

    Uses a :class:`jaxstyle.chess.BalancedBatches` for its data source and player ranges and
    draws from a generator seeded by the step: ``players_per_batch`` distinct players with
    ``batch_size // players_per_batch`` positions each (``None``: a player per example).
    """

    def __init__(self, data: Data, players, batch_size, players_per_batch, seed, stage, mesh):
        from jaxstyle.chess.batching import BalancedBatches, collate

        self.batches = BalancedBatches(
            data.tfds_dir, "train", batch_size, players_per_batch, players=players
        )
        self.collate = collate
        self.seed, self.stage, self.mesh = seed, stage, mesh

    def indices(self, step: int) -> np.ndarray:
        b = self.batches
        rng = np.random.default_rng([self.seed, self.stage, step])
        if b.players_per_batch is None:
            rows = rng.integers(len(b.ranges), size=b.batch_size)
        else:
            chosen = rng.choice(len(b.ranges), size=b.players_per_batch, replace=False)
            rows = np.repeat(chosen, b.batch_size // b.players_per_batch)
        starts, counts = b.ranges[rows, 1], b.ranges[rows, 2]
        return starts + (rng.random(len(rows)) * counts).astype(np.int64)

    def __call__(self, step: int) -> dict:
        records = self.batches.source.__getitems__(self.indices(step).tolist())
        batch = self.collate(records)
        keep = ("planes", "legal_mask", "move", "player")
        return put_batch({k: batch[k] for k in keep}, self.mesh)


def put_batch(batch: dict, mesh) -> dict:
    """Host batch → device, split over the mesh's ``data`` axis when it divides the batch."""
    if mesh is None or mesh.devices.size == 1:
        return {k: jnp.asarray(v) for k, v in batch.items()}
    rows = len(next(iter(batch.values())))
    axis = "data" if rows % mesh.shape["data"] == 0 else None
    return {
        k: jax.device_put(v, NamedSharding(mesh, P(axis, *([None] * (v.ndim - 1)))))
        for k, v in batch.items()
    }


def read_positions(data: Data, split: str, players, *, max_games=None, max_positions=None):
    """All positions of ``players`` in ``split`` (each player's first ``max_games`` games or
    first ``max_positions`` positions) as one host batch, plus ``games [n_players]``."""
    from jaxstyle.chess.batching import collate, player_ranges
    from jaxstyle.chess.tfds_builder import data_source

    source = data_source(data.tfds_dir, split)
    table = {int(p): (int(s), int(c)) for p, s, c in player_ranges(data.tfds_dir, split)}
    parts, games = [], []
    for player in players:
        start, count = table.get(int(player), (0, 0))
        if max_positions is not None:
            count = min(count, max_positions)
        records = source.__getitems__(list(range(start, start + count))) if count else []
        if max_games is not None and records:
            ids = np.array([r["game"] for r in records])
            first = list(dict.fromkeys(ids.tolist()))[:max_games]
            records = [r for r, g in zip(records, ids) if g in set(first)]
        games.append(len({int(r["game"]) for r in records}))
        parts.extend(records)
    if not parts:
        raise RunError(f"no {split} positions for the requested players")
    return collate(parts), np.array(games)


# ---------------------------------------------------------------------------------------
# Model and stages


def style_config(config: ml_collections.ConfigDict, num_players: int) -> StyleConfig:
    m = config.model
    try:
        return StyleConfig(
            num_players=num_players,
            policy=PolicyConfig(
                blocks=m.blocks, filters=m.filters, se_ratio=m.se_ratio,
                head_channels=m.head_channels, head=m.get("head", "flat"),
            ),
            skills=SkillConfig(
                num_skills=m.num_skills, num_heads=m.num_heads, rank=m.rank,
                shared_routing=m.shared_routing, conv_kernel=m.conv_kernel,
            ),
            adapt=m.adapt,
        )  # fmt: skip
    except ValueError as err:
        raise RunError(f"bad model config: {err}") from None


def stage_config(config: ml_collections.ConfigDict, num_steps: int) -> ml_collections.ConfigDict:
    """The config a stage's run directory records: everything, with its own step count."""
    stage = ml_collections.ConfigDict(config.to_dict())
    stage.train.num_steps = int(num_steps)
    return stage


def _guarded(step):
    @jax.jit
    def train_step(state, batch):
        new, metrics = step(state, batch)
        return guarded_update(state, new, metrics)

    return train_step


def _replicate(tree, mesh):
    if mesh is None or mesh.devices.size == 1:
        return tree
    return jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, P())), tree)


def pretrain(config, data: Data, model: StylePolicy, workdir: Path) -> tuple[StylePolicy, dict]:
    """Stage (a): behaviour cloning of the base network."""
    o = config.train
    if config.optim.warmup_steps >= o.num_steps:
        raise RunError(
            f"optim.warmup_steps={config.optim.warmup_steps} must be below "
            f"train.num_steps={o.num_steps}"
        )
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.optim.learning_rate, max(1, config.optim.warmup_steps), max(2, o.num_steps)
    )
    tx = optax.adam(schedule)
    with Run(workdir / STAGES[0], stage_config(config, o.num_steps), name="style-a") as run:
        graphdef, state = training.init_state(model, "pretrain", tx)
        state = _replicate(state, run.mesh)
        sampler = Sampler(data, data.train_ids, o.batch_size, None, config.seed, 0, run.mesh)
        step = _guarded(training.pretrain_step(graphdef, tx))
        state, last = fit(run, state, step, sampler, examples_per_step=o.batch_size)
    return training.model_from_state(graphdef, state), last


def multitask(config, data: Data, model: StylePolicy, workdir: Path) -> tuple[StylePolicy, dict]:
    """Stage (b): skills + style table, base frozen, balanced batches over players."""
    tx = training.multitask_optimizer(
        config.optim.multitask_learning_rate, config.optim.routing_multiplier
    )
    steps, batch = config.multitask.num_steps, config.train.batch_size
    with Run(workdir / STAGES[1], stage_config(config, steps), name="style-b") as run:
        graphdef, state = training.init_state(model, "multitask", tx)
        state = place_table(state, run.mesh, (model.num_players, model.routing_size))
        per_batch = min(int(config.multitask.players_per_batch), len(data.train_ids))
        while batch % per_batch:
            per_batch -= 1
        sampler = Sampler(data, data.train_ids, batch, per_batch, config.seed, 1, run.mesh)
        step = _guarded(training.multitask_step(graphdef, tx))
        state, last = fit(run, state, step, sampler, examples_per_step=batch)
    return training.model_from_state(graphdef, state), last


def place_table(state, mesh, table_shape):
    """Style-table leaves sharded by rows over ``data`` (if it divides them), rest replicated."""
    if mesh is None or mesh.devices.size == 1:
        return state
    if table_shape[0] % mesh.shape["data"]:
        print(
            f"style table of {table_shape[0]} rows does not split over data={mesh.shape['data']}"
            "; replicating it",
            flush=True,
        )
        return _replicate(state, mesh)
    return adapters.shard_rows(state, mesh, table_shape)


def fewshot(config, data: Data, model: StylePolicy, workdir: Path) -> tuple[np.ndarray, dict]:
    """Stage (c): routing-only vectors for the held-out players from their first k games."""
    f = config.fewshot
    held = data.holdout_ids
    if not len(held):
        return np.zeros((0, model.routing_size), np.float32), {"short_players": []}
    positions, games = read_positions(data, "train", held, max_games=f.games)
    short = [data.players[p] for p, g in zip(held, games) if g < f.games]
    if short:
        print(
            f"few-shot: {len(short)} unseen player(s) have fewer than {f.games} training games "
            f"and are fitted on what they have: {', '.join(short[:10])}",
            flush=True,
        )
    group = np.searchsorted(held, positions["player"]).astype(np.int32)
    weight = training.group_weights(group, len(held)) * len(group) / len(held)
    host = {
        "planes": positions["planes"],
        "legal_mask": positions["legal_mask"],
        "move": positions["move"],
        "group": group,
        "weight": weight.astype(np.float32),
    }
    tx = optax.adam(f.learning_rate)
    with Run(workdir / STAGES[2], stage_config(config, f.num_steps), name="style-c") as run:
        key = jax.random.key(config.seed + 3)
        graphdef, state = training.fewshot_init(model, len(held), tx, key)
        state = _replicate(state, run.mesh)
        size = min(f.batch_size, len(group))

        def batch_at(step: int) -> dict:
            rng = np.random.default_rng([config.seed, 2, step])
            index = rng.integers(len(group), size=size)
            return put_batch({k: v[index] for k, v in host.items()}, run.mesh)

        step = _guarded(training.fewshot_step(graphdef, tx))
        state, last = fit(run, state, step, batch_at, examples_per_step=size)
    last = dict(last, short_players=short, games=games.tolist())
    return np.asarray(state["vectors"]), last


# ---------------------------------------------------------------------------------------
# Evaluation


def ceiling(data: Data, positions: dict) -> dict[str, np.ndarray] | None:
    """Each synthetic player's own policy on ``positions``: ``top1`` (0/1, its most likely
    move is the played one) and ``expected`` (``max_m P(m|x,p)``), or ``None`` when the data
    has no ``players.json`` ground truth."""
    import chess

    from jaxstyle.chess import encoding
    from jaxstyle.chess.evaluator import analyse_moves
    from jaxstyle.chess.style_features import move_features
    from jaxstyle.chess.synthetic import load_ground_truth, move_logits, repertoire_move

    if not (data.root / "players.json").is_file():
        return None
    gen, truth = load_ground_truth(data.root)
    by_name = {p.name: p for p in truth}
    games = games_by_ordinal(data.root / "pgn", set(np.unique(positions["game"]).tolist()))
    evaluator = gen.make_evaluator()
    n = len(positions["move"])
    top1, expected = np.zeros(n, np.float32), np.zeros(n, np.float32)
    try:
        for i in tqdm(range(n), desc="player policies", unit="pos", mininterval=2.0):
            game = games[int(positions["game"][i])]
            board = chess.Board(game.fen)
            ply = int(positions["ply"][i])
            for uci in game.moves[:ply]:
                board.push_uci(uci)
            player = by_name[data.players[int(positions["player"][i])]]
            table = analyse_moves(board)
            deltas = evaluator.deltas(table)
            book = None
            if ply < gen.opening_plies:
                book = repertoire_move(player, table, deltas, gen.book_tolerance)
            logits = move_logits(player, table, deltas, move_features(table, book))
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            best = table.moves[int(np.argmax(logits))]
            top1[i] = encoding.move_to_index(board, best) == int(positions["move"][i])
            expected[i] = probs.max()
    finally:
        if hasattr(evaluator, "close"):
            evaluator.close()
    return {"top1": top1, "expected": expected}


def games_by_ordinal(pgn_dir: Path, wanted: set[int]) -> dict:
    """``{ordinal: GameRecord}`` for the dataset's ``game`` ids in ``wanted`` (the ordinal of a
    game among all games of the sources in reading order; only those games are parsed)."""
    from jaxstyle.chess import pgn
    from jaxstyle.chess.sources import resolve_sources

    found, ordinal = {}, 0
    check = pgn.selection_check(pgn.GameFilter(), None, "not_selected")
    for path in resolve_sources(pgn_dir):
        for game in pgn.iter_file_games(path, []):
            if ordinal in wanted:
                record, reason = pgn.parse_game(game, path.name, check, pgn.GameFilter())
                if record is None:
                    raise RunError(f"game {ordinal} of {pgn_dir} does not parse ({reason})")
                found[ordinal] = record
            ordinal += 1
    missing = wanted - set(found)
    if missing:
        raise RunError(f"{len(missing)} dataset games not found in {pgn_dir}")
    return found


def _per_player(values: np.ndarray, players: np.ndarray) -> dict[int, float]:
    return {int(p): float(values[players == p].mean()) for p in np.unique(players)}


def evaluate(config, data: Data, model: StylePolicy, vectors: np.ndarray) -> dict[str, Any]:
    """Move matching on query games: base vs style vectors vs the players' own policy."""
    e = config.eval
    rng = np.random.default_rng([config.seed, 9])
    seen = data.train_ids
    if len(seen) > e.players:
        seen = np.sort(rng.choice(seen, size=e.players, replace=False))
    seen = np.array([p for p in seen if p in set(data.ranges["query"][:, 0].tolist())])
    result: dict[str, Any] = {}
    groups = {"trained": (seen, None), "unseen": (data.holdout_ids, vectors)}
    for name, (ids, fitted) in groups.items():
        if not len(ids):
            continue
        pos, _ = read_positions(data, "query", ids, max_positions=e.positions_per_player)
        args = (model, pos["planes"], pos["legal_mask"], pos["move"])
        base, _ = training.score_moves(*args)
        if fitted is None:
            styled, _ = training.score_moves(*args, players=pos["player"])
        else:
            rows = np.searchsorted(ids, pos["player"])
            styled, _ = training.score_moves(*args, routing=np.asarray(fitted)[rows])
        hit_base = (base == pos["move"]).astype(np.float32)
        hit_style = (styled == pos["move"]).astype(np.float32)
        pb, ps = _per_player(hit_base, pos["player"]), _per_player(hit_style, pos["player"])
        gains = np.array([ps[p] - pb[p] for p in pb])
        out = {
            "players": len(pb),
            "positions": len(pos["move"]),
            "base_top1": float(hit_base.mean()),
            "style_top1": float(hit_style.mean()),
            "gain_mean": float(gains.mean()),
            "gain_median": float(np.median(gains)),
            "players_gaining": float((gains > 0).mean()),
            "per_player": {data.players[p]: {"base": pb[p], "style": ps[p]} for p in sorted(pb)},
        }
        if e.ceiling:
            ceil = ceiling(data, pos)
            if ceil is not None:
                out["ceiling_top1"] = float(ceil["top1"].mean())
                out["ceiling_expected_top1"] = float(ceil["expected"].mean())
                pc = _per_player(ceil["top1"], pos["player"])
                for p in sorted(pb):
                    out["per_player"][data.players[p]]["ceiling"] = pc[p]
        result[name] = out
    return result


def summary_line(metrics: dict) -> str:
    parts = []
    for name in ("trained", "unseen"):
        if name in metrics:
            m = metrics[name]
            text = f"{name}: base {100 * m['base_top1']:.1f}% → style {100 * m['style_top1']:.1f}%"
            if "ceiling_top1" in m:
                text += f" (own policy {100 * m['ceiling_top1']:.1f}%)"
            parts.append(text + f", {100 * m['players_gaining']:.0f}% of players gain")
    return "move matching — " + "; ".join(parts)


# ---------------------------------------------------------------------------------------
# Entry point


def train(config: ml_collections.ConfigDict, workdir: Path) -> dict[str, Any]:
    """Stages (a)–(c), export to ``workdir/model``, evaluation; returns the results dict
    ``{"model_path", "metrics", "stages", "num_players", "routing_size"}``."""
    config_dict = config_to_dict(config)
    workdir, has_run = check_workdir(workdir, config_dict)  # the whole run's config, on top
    data = load_data(config)
    workdir.mkdir(parents=True, exist_ok=True)
    write_config(workdir, config_dict, has_run, 0)
    model_config = style_config(config, len(data.players))
    model = StylePolicy(model_config, rngs=nnx.Rngs(config.seed))
    model, last_a = pretrain(config, data, model, workdir)
    model, last_b = multitask(config, data, model, workdir)
    vectors, last_c = fewshot(config, data, model, workdir)
    model = _to_host(model)
    path = export(model, model_config, vectors, data, workdir / "model")
    metrics = evaluate(config, data, model, vectors)
    print(summary_line(metrics), flush=True)
    results = {
        "model_path": str(path),
        "num_players": model.num_players,
        "routing_size": model.routing_size,
        "stages": {"pretrain": last_a, "multitask": last_b, "fewshot": last_c},
        "metrics": metrics,
    }
    (workdir / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    return results


def export(model, model_config, vectors, data: Data, path: Path) -> Path:
    """``model_io.save`` to ``path`` (replacing an older export) + the few-shot vectors."""
    if path.exists():
        shutil.rmtree(path)
    model_io.save(model, model_config, path)
    np.savez(
        path / "fewshot_vectors.npz",
        vectors=np.asarray(vectors),
        players=np.array([data.players[p] for p in data.holdout_ids], dtype=str),
    )
    return path


def _to_host(model):
    """The model with every array on one device (a sharded table is gathered)."""
    graphdef, state = nnx.split(model)
    device = jax.devices()[0]
    state = jax.tree.map(lambda x: jax.device_put(np.asarray(x), device), state)
    return nnx.merge(graphdef, state)
