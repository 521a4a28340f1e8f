"""The three training stages of style vectors, as pure step functions over pytrees.

(a) **pretrain** — behaviour cloning of the base network on every player's moves (skills and
    style table untouched, adapters off);
(b) **multitask** — skills and style table ``Z`` trained together, base frozen, ``Z`` at
    ``routing_multiplier × `` (default 2×) the skills' learning rate; batches mix players
    (the trainer draws them with :class:`jaxstyle.chess.BalancedBatches`);
(c) **fewshot** — new style vectors for unseen players, everything else frozen
    (MHR-z, routing only), many players at once (:func:`fit_style_vectors`).

The loss is the legal-masked cross-entropy of the played move,

.. math::

    \\mathcal{L} = \\frac{1}{\\sum_i w_i} \\sum_i w_i
        \\big(-\\log \\operatorname{softmax}(f(x_i))_{m_i}\\big)

with optional per-example weights ``w`` (``batch["weight"]``, default 1).

A training state is a plain pytree ``{"params": {"base", "skills", "routing"}, "opt": ...}``
(``nnx.State`` leaves, orbax-checkpointable); ``graphdef`` stays outside it. A step is
``step(state, batch) -> (state, metrics)`` with ``metrics = {"loss", "accuracy",
"grad_norm"}``; it is pure and not jitted, so a trainer can wrap it (non-finite guard) and jit.

Batch dict: ``planes [B, 18, 8, 8] uint8``, ``legal_mask [B, 1880] bool``, ``move [B] int32``,
``player [B] int32`` (stage b) or ``group [B] int32`` (stage c), optional ``weight [B]``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from jaxstyle.adapters import Routing, Skill, lookup_rows
from jaxstyle.model import StylePolicy

BASE = nnx.All(nnx.Param, nnx.Not(Skill), nnx.Not(Routing))
"""Filter of the base network's parameters."""

PARTS = ("base", "skills", "routing")
STAGES = {"pretrain": ("base",), "multitask": ("skills", "routing")}

State = dict[str, Any]
Step = Callable[[State, dict], tuple[State, dict]]


def split_model(model: StylePolicy) -> tuple[nnx.GraphDef, dict[str, nnx.State]]:
    """``(graphdef, {"base", "skills", "routing"})`` — the model's parameters by role."""
    graphdef, base, skills, routing = nnx.split(model, BASE, Skill, Routing)
    return graphdef, {"base": base, "skills": skills, "routing": routing}


def merge_model(graphdef: nnx.GraphDef, params: dict[str, nnx.State]) -> StylePolicy:
    """Inverse of :func:`split_model`."""
    return nnx.merge(graphdef, *(params[k] for k in PARTS))


def model_from_state(graphdef: nnx.GraphDef, state: State) -> StylePolicy:
    """The model held by a training state of any stage."""
    return merge_model(graphdef, state["params"])


def masked_cross_entropy(logits: jax.Array, moves: jax.Array) -> jax.Array:
    """``[batch]`` −log p(move) under masked ``logits [batch, 1880]``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, moves)


def _weighted_mean(values: jax.Array, batch: dict) -> jax.Array:
    weight = batch.get("weight")
    if weight is None:
        return values.mean()
    weight = weight.astype(jnp.float32)
    return (values * weight).sum() / jnp.maximum(weight.sum(), 1e-12)


def _policy_metrics(logits: jax.Array, batch: dict) -> tuple[jax.Array, dict]:
    loss = _weighted_mean(masked_cross_entropy(logits, batch["move"]), batch)
    correct = (jnp.argmax(logits, -1) == batch["move"]).astype(jnp.float32)
    return loss, {"loss": loss, "accuracy": _weighted_mean(correct, batch)}


def multitask_optimizer(
    learning_rate: float, routing_multiplier: float = 2.0, **adam
) -> optax.GradientTransformation:
    """Adam over ``{"skills", "routing"}``; routing logits at ``routing_multiplier ×`` the rate."""
    return optax.multi_transform(
        {
            "skills": optax.adam(learning_rate, **adam),
            "routing": optax.adam(learning_rate * routing_multiplier, **adam),
        },
        {"skills": "skills", "routing": "routing"},
    )


def init_state(
    model: StylePolicy, stage: str, tx: optax.GradientTransformation
) -> tuple[nnx.GraphDef, State]:
    """``(graphdef, state)`` for stage ``"pretrain"`` or ``"multitask"``."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {sorted(STAGES)}, got {stage!r}")
    graphdef, params = split_model(model)
    trainable = {k: params[k] for k in STAGES[stage]}
    return graphdef, {"params": params, "opt": tx.init(trainable)}


def make_step(graphdef: nnx.GraphDef, stage: str, tx: optax.GradientTransformation) -> Step:
    """The pure step of stage ``"pretrain"`` (base network) or ``"multitask"`` (skills + ``Z``)."""
    names = STAGES[stage]

    def loss_fn(trainable, params, batch):
        model = merge_model(graphdef, {**params, **trainable})
        players = batch["player"] if stage == "multitask" else None
        logits = model(batch["planes"], batch["legal_mask"], players=players)
        return _policy_metrics(logits, batch)

    def step(state: State, batch: dict) -> tuple[State, dict]:
        with jax.named_scope(f"{stage}_step"):
            params = state["params"]
            trainable = {k: params[k] for k in names}
            grads, metrics = jax.grad(loss_fn, has_aux=True)(trainable, params, batch)
            updates, opt = tx.update(grads, state["opt"], trainable)
            trainable = optax.apply_updates(trainable, updates)
            metrics["grad_norm"] = optax.tree.norm(grads)
            return {"params": {**params, **trainable}, "opt": opt}, metrics

    return step


def pretrain_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation) -> Step:
    """Stage (a): behaviour cloning of the base network (adapters off)."""
    return make_step(graphdef, "pretrain", tx)


def multitask_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation) -> Step:
    """Stage (b): skills and style table; use :func:`multitask_optimizer` for ``tx``."""
    return make_step(graphdef, "multitask", tx)


# ---------------------------------------------------------------------------------------
# Stage (c): routing-only few-shot fitting of new style vectors.


def init_style_vectors(key: jax.Array, num_groups: int, size: int) -> jax.Array:
    """``[num_groups, size] float32`` fresh routing logits, uniform(±1e-3) like the table."""
    return jax.random.uniform(key, (num_groups, size), jnp.float32, -1e-3, 1e-3)


def fewshot_init(
    model: StylePolicy, num_groups: int, tx: optax.GradientTransformation, key: jax.Array
):
    """``(graphdef, state)`` of stage (c): ``state = {"params", "vectors", "opt"}``."""
    graphdef, params = split_model(model)
    vectors = init_style_vectors(key, num_groups, model.routing_size)
    return graphdef, {"params": params, "vectors": vectors, "opt": tx.init(vectors)}


def fewshot_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation) -> Step:
    """Stage (c): only ``state["vectors"]`` learns; rows are picked by ``batch["group"]``."""

    def loss_fn(vectors, params, batch):
        model = merge_model(graphdef, params)
        routing = lookup_rows(vectors, batch["group"])
        logits = model(batch["planes"], batch["legal_mask"], routing=routing)
        return _policy_metrics(logits, batch)

    def step(state: State, batch: dict) -> tuple[State, dict]:
        with jax.named_scope("fewshot_step"):
            grads, metrics = jax.grad(loss_fn, has_aux=True)(
                state["vectors"], state["params"], batch
            )
            updates, opt = tx.update(grads, state["opt"], state["vectors"])
            metrics["grad_norm"] = optax.tree.norm(grads)
            vectors = optax.apply_updates(state["vectors"], updates)
            return {"params": state["params"], "vectors": vectors, "opt": opt}, metrics

    return step


def group_weights(group: np.ndarray, num_groups: int) -> np.ndarray:
    """``float32 [N]``: ``1 / n_g`` per example, so every group counts the same in the loss."""
    counts = np.bincount(group, minlength=num_groups).astype(np.float32)
    return 1.0 / np.maximum(counts[group], 1.0)


def fit_style_vectors(
    model: StylePolicy,
    planes,
    legal_mask,
    moves,
    group,
    num_groups: int,
    *,
    steps: int,
    learning_rate: float,
    key: jax.Array,
    batch_size: int | None = 512,
    chunk: int = 25,
    progress: bool = False,
    init: jax.Array | None = None,
) -> jax.Array:
    """Fits one new style vector per group with everything else frozen (MHR-z).

    Minimises ``(1/G) Σ_g mean_{i∈g} CE_i`` (every group weighs the same, however many
    positions it has) with Adam over minibatches of ``batch_size`` positions drawn uniformly
    from all groups (``None``: every position, every step); steps run ``chunk`` at a time in
    a jitted ``lax.scan``. The groups' vectors never interact, so with full batches fitting
    many groups at once equals fitting each alone (Adam is invariant to the ``1/G``).

    Args:
      model: a trained :class:`StylePolicy` (left unchanged).
      planes: ``[N, 18, 8, 8] uint8``; legal_mask ``[N, 1880] bool``; moves ``[N] int32``.
      group: ``[N] int32`` in ``[0, num_groups)``: which new vector each position trains.
      num_groups: number of new style vectors.
      steps: optimisation steps; learning_rate: Adam rate (MHR used 0.1 for routing).
      key: PRNG key (initial vectors and minibatches).
      batch_size: positions per step (``None``: all of them); chunk: steps per jitted call.
      progress: show a tqdm bar; init: ``[num_groups, R]`` start (default uniform ±1e-3).
    Returns:
      ``[num_groups, model.routing_size] float32`` routing logits (use as ``routing=``).

    Raises:
      ValueError: mismatched lengths, a group id out of range, or a group without positions.
    """
    group = np.asarray(group)
    n = len(group)
    for name, arr in (("planes", planes), ("legal_mask", legal_mask), ("moves", moves)):
        if len(arr) != n:
            raise ValueError(f"{name} has {len(arr)} rows but group has {n}")
    if n == 0:
        raise ValueError("fit_style_vectors needs at least one position")
    if group.min() < 0 or group.max() >= num_groups:
        raise ValueError(
            f"group ids must lie in [0, {num_groups}), got {group.min()}..{group.max()}"
        )
    empty = np.flatnonzero(np.bincount(group, minlength=num_groups) == 0)
    if len(empty):
        raise ValueError(f"{len(empty)} group(s) have no positions (first: {empty[:5].tolist()})")
    tx = optax.adam(learning_rate)
    init_key, data_key = jax.random.split(key)
    graphdef, state = fewshot_init(model, num_groups, tx, init_key)
    if init is not None:
        init = jnp.asarray(init, jnp.float32)
        if init.shape != state["vectors"].shape:
            raise ValueError(f"init must be {state['vectors'].shape}, got {init.shape}")
        state = {**state, "vectors": init, "opt": tx.init(init)}
    data = {
        "planes": jnp.asarray(planes, jnp.uint8),
        "legal_mask": jnp.asarray(legal_mask, bool),
        "move": jnp.asarray(moves, jnp.int32),
        "group": jnp.asarray(group, jnp.int32),
        "weight": jnp.asarray(group_weights(group, num_groups) * n / num_groups),
    }
    size = None if batch_size is None or batch_size >= n else int(batch_size)
    run = _scan_steps(graphdef, float(learning_rate), size)  # compiled once per layout
    chunk = max(d for d in range(1, min(chunk, steps) + 1) if steps % d == 0)  # one shape
    bar = tqdm(total=steps, desc="style vectors", unit="step", disable=not progress)
    done = 0
    while done < steps:
        todo = chunk
        keys = jax.random.split(jax.random.fold_in(data_key, done), todo)
        state = run(state, data, keys)
        done += todo
        bar.update(todo)
    bar.close()
    return state["vectors"]


@functools.lru_cache(maxsize=16)
def _scan_steps(graphdef: nnx.GraphDef, learning_rate: float, batch_size: int | None):
    step = fewshot_step(graphdef, optax.adam(learning_rate))

    @jax.jit
    def run(state, data, keys):
        def body(state, key):
            batch = data
            if batch_size is not None:
                index = jax.random.randint(key, (batch_size,), 0, data["move"].shape[0])
                batch = jax.tree.map(lambda a: a[index], data)
            state, _ = step(state, batch)
            return state, None

        return jax.lax.scan(body, state, keys)[0]

    return run


# ---------------------------------------------------------------------------------------
# Evaluation helpers.


def predict(
    model: StylePolicy, planes, legal_mask, *, players=None, routing=None, batch_size: int = 1024
) -> np.ndarray:
    """``int32 [N]`` top-1 legal move of each position (jitted, fixed-size batches)."""
    moves = np.zeros(len(planes), np.int32)
    return score_moves(
        model, planes, legal_mask, moves, players=players, routing=routing, batch_size=batch_size
    )[0]


def score_moves(
    model: StylePolicy,
    planes,
    legal_mask,
    moves,
    *,
    players=None,
    routing=None,
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """``(top1 int32 [N], log p(moves) float32 [N])`` under the base model, the table rows
    ``players [N]`` or the routing logits ``routing [N, R]``, in jitted fixed-size batches
    (the last one padded, so one compilation serves every call)."""
    graphdef, params = split_model(model)
    fn = _score_fn(graphdef, players is not None, routing is not None)
    n = len(planes)
    top1, logp = np.zeros(n, np.int32), np.zeros(n, np.float32)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        args = [
            _padded(a, start, stop, batch_size)
            for a in (planes, legal_mask, moves, players, routing)
        ]
        t, lp = fn(params, *args)
        top1[start:stop], logp[start:stop] = (
            np.asarray(t)[: stop - start],
            np.asarray(lp)[: stop - start],
        )
    return top1, logp


def _padded(a, start: int, stop: int, size: int):
    if a is None:
        return None
    chunk = np.asarray(a[start:stop])
    if stop - start < size:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - (stop - start), axis=0)])
    return chunk


_SCORE_CACHE: dict = {}


def _score_fn(graphdef, with_players: bool, with_routing: bool):
    key = (graphdef, with_players, with_routing)
    if key not in _SCORE_CACHE:

        @jax.jit
        def fn(params, planes, legal, moves, players, routing):
            model = merge_model(graphdef, params)
            logits = model(planes, legal, players=players, routing=routing)
            return jnp.argmax(logits, -1), -masked_cross_entropy(logits, moves)

        _SCORE_CACHE[key] = fn
    return _SCORE_CACHE[key]
