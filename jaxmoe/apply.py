"""The MoE forward pass as pure functions of arrays (the NNX layer only holds parameters).

``moe_shard`` is the computation of one device on its share of the batch; with
``axis=None`` it is the whole single-device layer. ``moe_apply`` runs it directly, or
under ``jax.shard_map`` with the batch split over the data and expert mesh axes and the
experts over the expert axis. ``summarize`` turns the routing statistics into the
configured auxiliary losses and the training metrics.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmoe import dispatch as dsp
from jaxmoe import losses as L
from jaxmoe import metrics as M
from jaxmoe.config import MoEConfig, check_prune_threshold
from jaxmoe.experts import grouped_swiglu
from jaxmoe.grouped import resolve_backend, row_padding, sorted_swiglu
from jaxmoe.parallel import (
    default_block_rows,
    dropless_expert_parallel,
    exchange_fixed,
    resolve_exchange,
)
from jaxmoe.precision import accumulation_dtype, compute_dtype
from jaxmoe.routing import expert_choice, router_logits, token_choice


class MoEParams(NamedTuple):
    """Arrays of one MoE layer.

    Attributes:
      router_kernel: ``[d_model, E]``.
      router_bias: ``[E]`` loss-free balancing bias, or None.
      w_gate_up: ``[E, d_model, 2, d_expert]`` gate (index 0) and up (index 1)
        projections stored fused, so the forward pass reads them as one
        ``[E, d_model, 2·d_expert]`` matrix (a free reshape, no concatenation).
      w_down: ``[E, d_expert, d_model]``.

    ``w_gate`` / ``w_up`` (``[E, d_model, d_expert]`` views) and ``w_in`` (the fused
    matrix) are read-only properties; ``MoEParams.from_split`` builds params from separate
    gate and up arrays (the layout before fusing).
    """

    router_kernel: jax.Array
    router_bias: jax.Array | None
    w_gate_up: jax.Array
    w_down: jax.Array

    @classmethod
    def from_split(cls, router_kernel, router_bias, w_gate, w_up, w_down) -> MoEParams:
        """Params from separate ``w_gate``, ``w_up`` ``[E, d_model, d_expert]`` arrays."""
        return cls(router_kernel, router_bias, jnp.stack([w_gate, w_up], axis=2), w_down)

    @property
    def w_gate(self) -> jax.Array:
        """``[E, d_model, d_expert]`` gate projection."""
        return self.w_gate_up[:, :, 0]

    @property
    def w_up(self) -> jax.Array:
        """``[E, d_model, d_expert]`` up projection."""
        return self.w_gate_up[:, :, 1]

    @property
    def w_in(self) -> jax.Array:
        """``[E, d_model, 2·d_expert]`` fused gate/up matrix (gate columns first)."""
        return fused_w_in(self.w_gate_up)


def fused_w_in(w_gate_up: jax.Array) -> jax.Array:
    """``[E, d, 2, f]`` → ``[E, d, 2f]`` (a reshape of contiguous memory, no copy)."""
    e, d, two, f = w_gate_up.shape
    return w_gate_up.reshape(e, d, two * f)


class RoutingStats(NamedTuple):
    """Per-sequence and per-device routing statistics (inputs of losses and metrics).

    Attributes:
      token_fraction: ``[B, E]`` f: fraction of each sequence's tokens choosing expert i.
      mean_probs: ``[B, E]`` P: mean router distribution per sequence.
      z_loss: ``[B]`` mean over each sequence of ``logsumexp(logits)²``.
      entropy: ``[B]`` mean router entropy per sequence (nats).
      counts: ``[n_devices, E]`` assignments per expert (before capacity drops).
      dropped: ``[n_devices]`` selected assignments not computed (capacity overflow;
        expert choice: tokens no expert took).
      pruned: ``[n_devices]`` assignments removed by dynamic-k pruning.
      rows_computed: ``[n_devices]`` expert-buffer rows the expert matmuls ran.
      candidates: ``[n_devices]`` denominator of the dropped/pruned fractions: T·k
        assignments (token choice) or T tokens (expert choice).
    """

    token_fraction: jax.Array
    mean_probs: jax.Array
    z_loss: jax.Array
    entropy: jax.Array
    counts: jax.Array
    dropped: jax.Array
    pruned: jax.Array
    rows_computed: jax.Array
    candidates: jax.Array


class MoEAux(NamedTuple):
    """Auxiliary outputs of one layer call.

    Attributes:
      loss: scalar, ``Σ coef · loss`` over the configured losses (0 with none).
      losses: ``{name: unweighted value}`` for the configured losses.
      metrics: ``{name: value}``: ``tokens_per_expert [E]`` and float32 scalars
        ``unique_experts``, ``seu``, ``max_vio``, ``routing_entropy``,
        ``orthogonality_mse``, ``dropped_fraction``, ``pruned_fraction``, ``rows_computed``.
    """

    loss: jax.Array
    losses: dict[str, jax.Array]
    metrics: dict[str, jax.Array]


def _one(v: Any) -> jax.Array:
    return jnp.reshape(jnp.asarray(v, jnp.int32), (1,))


class _Dispatched(NamedTuple):
    y: jax.Array  # [T, d]
    counts: jax.Array  # [E] assignments per expert
    dropped: Any
    rows_computed: Any


def _token_choice_experts(
    xf: jax.Array,
    ids: jax.Array,
    gates: jax.Array,
    w_in: jax.Array,
    w_out: jax.Array,
    cfg: MoEConfig,
    axis: str | None,
    num_shards: int,
) -> _Dispatched:
    """Routes ``[T, d]`` tokens with ``ids``/``gates [T, k]`` through the configured dispatch."""
    tokens, k = ids.shape
    num_experts = cfg.num_experts
    if cfg.dispatch == "capacity":
        cap = dsp.capacity(tokens, k, num_experts, cfg.capacity_factor, cfg.min_capacity)
        plan = dsp.capacity_plan(ids, num_experts, cap)
        xb = dsp.dispatch_tokens(xf, plan).reshape(num_experts, cap, -1)
        yb = exchange_fixed(xb, w_in, w_out, axis, num_shards)
        y = dsp.combine_outputs(yb.reshape(num_experts * cap, -1), plan, gates)
        return _Dispatched(y, plan.counts, plan.num_dropped, num_experts * cap)
    if axis is not None:
        local = num_experts // num_shards
        block = default_block_rows(tokens, k, local, cfg.ep_buffer_factor, num_shards)
        return _Dispatched(
            *dropless_expert_parallel(
                xf,
                ids,
                gates,
                w_in,
                w_out,
                num_experts=num_experts,
                axis=axis,
                num_shards=num_shards,
                block_rows=block,
                tile_size=cfg.tile_size,
                backend=resolve_backend(cfg.grouped_matmul),
                exchange=resolve_exchange(cfg.ep_exchange),
            )
        )
    backend = resolve_backend(cfg.grouped_matmul)
    if backend != "tiled":
        plan = dsp.sorted_plan(ids, num_experts, row_padding(backend, tokens * k))
        ys = sorted_swiglu(dsp.dispatch_tokens(xf, plan), plan.counts, w_in, w_out, backend)
        y = dsp.combine_outputs(ys, plan, gates)
        return _Dispatched(y, plan.counts, plan.num_dropped, jnp.sum(plan.counts))
    tile = dsp.choose_tile(tokens * k, num_experts, cfg.tile_size)
    layout = dsp.tile_layout(tokens * k, num_experts, tile)
    plan = dsp.dropless_plan(ids, num_experts, layout)
    t = plan.tiles
    rows, weights = dsp.row_tokens(plan), dsp.row_weights(gates, plan)
    y = grouped_swiglu(xf, rows, weights, w_in, w_out, t.tile_expert, t.num_used, layout)
    return _Dispatched(y, plan.counts, plan.num_dropped, t.rows_computed(layout))


def _expert_choice_experts(
    xf: jax.Array,
    logits: jax.Array,
    w_in: jax.Array,
    w_out: jax.Array,
    cfg: MoEConfig,
    axis: str | None,
    num_shards: int,
) -> tuple[_Dispatched, jax.Array, int]:
    """Expert choice per sequence; returns the dispatch result, probs and the capacity C."""
    batch, seq, num_experts = logits.shape
    cap = dsp.capacity(seq, cfg.top_k, num_experts, cfg.capacity_factor, cfg.min_capacity)
    token_idx, gates, probs = expert_choice(logits, cap, gating=cfg.gating)  # [B, E, C]
    rows = jnp.arange(batch, dtype=jnp.int32)[:, None, None] * seq + token_idx
    rows = rows.transpose(1, 0, 2).reshape(-1)  # expert-major [E·B·C]
    xb = jnp.take(xf, rows, axis=0).reshape(num_experts, batch * cap, -1)
    yb = exchange_fixed(xb, w_in, w_out, axis, num_shards)
    weighted = yb.reshape(rows.shape[0], -1) * gates.transpose(1, 0, 2).reshape(-1, 1)
    acc = accumulation_dtype(xf.dtype)
    y = jnp.zeros((batch * seq, xf.shape[-1]), acc).at[rows].add(weighted.astype(acc))
    taken = jnp.zeros((batch * seq,), jnp.int32).at[rows].add(1)
    counts = jnp.full((num_experts,), batch * cap, jnp.int32)
    return _Dispatched(y, counts, jnp.sum(taken == 0), num_experts * batch * cap), probs, cap


def moe_shard(
    params: MoEParams,
    x: jax.Array,
    cfg: MoEConfig,
    *,
    axis: str | None = None,
    num_shards: int = 1,
    prune_threshold: float = 0.0,
) -> tuple[jax.Array, RoutingStats]:
    """One device's MoE layer on its tokens.

    Args:
      params: weights; expert weights hold this device's ``E/num_shards`` experts.
      x: ``[B, S, d_model]`` tokens.
      cfg: layer config.
      axis: expert mesh axis (inside ``shard_map``), or None when all experts are local.
      num_shards: size of ``axis``.
      prune_threshold: dynamic-k threshold (0 = off; token choice only).

    Returns:
      ``(y [B, S, d_model], RoutingStats)``.
    """
    batch, seq, d = x.shape
    num_experts, k = cfg.num_experts, cfg.top_k
    tokens = batch * seq
    logits = router_logits(x, params.router_kernel)  # [B, S, E] float32 (float64 for f64 x)
    dtype = compute_dtype(cfg.dtype, x.dtype)
    w_in = fused_w_in(params.w_gate_up).astype(dtype)
    w_out = params.w_down.astype(dtype)
    xf = x.reshape(tokens, d).astype(dtype)
    axis = axis if num_shards > 1 else None

    if cfg.routing == "expert_choice":
        out, probs, cap = _expert_choice_experts(xf, logits, w_in, w_out, cfg, axis, num_shards)
        token_fraction = jnp.full((batch, num_experts), cap / seq, jnp.float32)
        pruned, candidates = 0, tokens
    else:
        r = token_choice(
            logits,
            k,
            gating=cfg.gating,
            renormalize=cfg.renormalize,
            bias=params.router_bias if cfg.loss_free_bias else None,
            prune_threshold=prune_threshold,
        )
        ids, gates = r.expert_ids.reshape(tokens, k), r.gates.reshape(tokens, k)
        out = _token_choice_experts(xf, ids, gates, w_in, w_out, cfg, axis, num_shards)
        probs = r.probs
        token_fraction, _ = L.sequence_routing_stats(r.expert_ids, probs)
        pruned, candidates = jnp.sum(ids == num_experts), tokens * k

    stats = RoutingStats(
        token_fraction=token_fraction,
        mean_probs=jnp.mean(probs, axis=1),
        z_loss=jax.vmap(L.router_z_loss)(logits),  # [B]: one value per sequence
        entropy=jnp.mean(M.token_entropy(probs), axis=-1),
        counts=out.counts.reshape(1, num_experts).astype(jnp.int32),
        dropped=_one(out.dropped),
        pruned=_one(pruned),
        rows_computed=_one(out.rows_computed),
        candidates=_one(candidates),
    )
    return out.y.reshape(batch, seq, d).astype(x.dtype), stats


def batch_axes(
    mesh: Mesh | None, data_axes: tuple[str, ...] = ("data",), expert_axis: str = "expert"
) -> tuple[str, ...]:
    """Mesh axes that split the batch: the data axes present, then the expert axis (``()``
    without a mesh). The layer passes its config's ``data_axes`` and ``expert_axis``."""
    if mesh is None:
        return ()
    names = [a for a in data_axes if a in mesh.axis_names]
    return tuple(names + ([expert_axis] if expert_axis in mesh.axis_names else []))


def check_mesh(mesh: Mesh, cfg: MoEConfig) -> None:
    """Raises ValueError when the experts cannot be split evenly over the expert axis."""
    shards = dict(mesh.shape).get(cfg.expert_axis, 1)
    if cfg.num_experts % shards:
        raise ValueError(
            f"num_experts={cfg.num_experts} is not divisible by the size {shards} of mesh "
            f"axis {cfg.expert_axis!r}"
        )


def _place(a: jax.Array, mesh: Mesh, spec: P) -> jax.Array:
    sharding = NamedSharding(mesh, spec)
    if all(t == AxisType.Explicit for t in mesh.axis_types):
        return jax.sharding.reshard(a, sharding)
    return jax.lax.with_sharding_constraint(a, sharding)


def param_specs(params: MoEParams, cfg: MoEConfig, mesh: Mesh | None = None) -> MoEParams:
    """``shard_map`` specs: router replicated, experts split over the expert axis.

    Experts are replicated when ``mesh`` is given and has no ``cfg.expert_axis``.
    """
    has_axis = mesh is None or cfg.expert_axis in mesh.axis_names
    ex = P(cfg.expert_axis) if has_axis else P()
    bias = None if params.router_bias is None else P()
    return MoEParams(P(), bias, ex, ex)


def check_input(x: jax.Array, cfg: MoEConfig) -> None:
    """One clear ``ValueError`` for a wrong shape, an empty input or a non-float dtype."""
    if x.ndim not in (2, 3) or x.shape[-1] != cfg.d_model:
        raise ValueError(
            f"expected x of shape [batch, seq, {cfg.d_model}] or [tokens, {cfg.d_model}], "
            f"got {x.shape}"
        )
    if 0 in x.shape:
        raise ValueError(f"empty input: x has shape {x.shape}; the MoE layer needs ≥ 1 token")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"x must be a floating array (float32, bfloat16, ...), got {x.dtype}: embed "
            "integer tokens before the MoE layer"
        )


def moe_apply(
    params: MoEParams,
    x: jax.Array,
    cfg: MoEConfig,
    *,
    mesh: Mesh | None = None,
    prune_threshold: float | None = None,
) -> tuple[jax.Array, RoutingStats]:
    """Runs the layer on ``x [B, S, d_model]`` (or ``[T, d_model]``, one sequence).

    With ``mesh``, the batch is split over the data axes then the expert axis
    (:func:`batch_axes`) and the experts over ``cfg.expert_axis`` inside ``jax.shard_map``;
    B must divide by the product of those axis sizes. Without, everything runs as one device
    program.

    Returns:
      ``(y, RoutingStats)`` with y shaped like x.
    """
    check_input(x, cfg)
    threshold = cfg.prune_threshold if prune_threshold is None else prune_threshold
    threshold = check_prune_threshold(threshold)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[None]
    axes = batch_axes(mesh, cfg.data_axes, cfg.expert_axis)
    if not axes:
        y, stats = moe_shard(params, x, cfg, prune_threshold=threshold)
    else:
        check_mesh(mesh, cfg)
        shape = dict(mesh.shape)
        num_devices = math.prod(shape[a] for a in axes)
        if x.shape[0] % num_devices:
            raise ValueError(
                f"batch size {x.shape[0]} is not divisible by the {num_devices} devices of "
                f"mesh axes {axes}"
            )
        shards = shape.get(cfg.expert_axis, 1)
        specs = param_specs(params, cfg, mesh)
        params = jax.tree.map(lambda a, s: _place(a, mesh, s), params, specs)
        x = _place(x, mesh, P(axes))
        fn = partial(
            moe_shard,
            cfg=cfg,
            axis=cfg.expert_axis if shards > 1 else None,
            num_shards=shards,
            prune_threshold=threshold,
        )
        stat_specs = RoutingStats(*([P(axes)] * len(RoutingStats._fields)))
        # Pallas calls (megablox) carry no varying-axes types, so that backend runs with
        # check_vma=False (as MaxText does); shard_map then still transposes correctly.
        check_vma = resolve_backend(cfg.grouped_matmul) != "megablox"
        y, stats = jax.shard_map(
            fn,
            mesh=mesh,
            in_specs=(specs, P(axes)),
            out_specs=(P(axes), stat_specs),
            check_vma=check_vma,
        )(params, x)
    return (y[0] if squeeze else y), stats


def summarize(stats: RoutingStats, router_kernel: jax.Array, cfg: MoEConfig) -> MoEAux:
    """Configured auxiliary losses (see ``jaxmoe.losses`` for normalisations) and metrics."""
    values = {}
    for name, _ in cfg.losses:
        if name == "simbal":
            values[name] = L.simbal_loss(router_kernel)
        elif name == "lbl":
            values[name] = L.load_balancing_loss(stats.token_fraction, stats.mean_probs)
        elif name == "z_loss":
            values[name] = jnp.mean(stats.z_loss)
    loss = jnp.zeros((), jnp.float32)
    for name, coef in cfg.losses:
        loss = loss + coef * values[name]
    load = jnp.sum(stats.counts, axis=0)
    candidates = jnp.maximum(jnp.sum(stats.candidates), 1).astype(jnp.float32)
    metrics = {
        "tokens_per_expert": load,
        "unique_experts": M.unique_experts(load),
        "seu": M.sequence_expert_utilisation(stats.token_fraction),
        "max_vio": M.max_violation(load),
        "routing_entropy": jnp.mean(stats.entropy),
        "orthogonality_mse": M.orthogonality_mse(router_kernel),
        "dropped_fraction": jnp.sum(stats.dropped) / candidates,
        "pruned_fraction": jnp.sum(stats.pruned) / candidates,
        "rows_computed": jnp.sum(stats.rows_computed).astype(jnp.float32),
    }
    return MoEAux(loss, values, metrics)


def moe_forward(
    params: MoEParams,
    x: jax.Array,
    cfg: MoEConfig,
    *,
    mesh: Mesh | None = None,
    prune_threshold: float | None = None,
) -> tuple[jax.Array, MoEAux]:
    """``moe_apply`` followed by ``summarize``: ``(y, MoEAux)``."""
    y, stats = moe_apply(params, x, cfg, mesh=mesh, prune_threshold=prune_threshold)
    return y, summarize(stats, params.router_kernel, cfg)
