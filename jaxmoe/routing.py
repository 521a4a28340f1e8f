"""Routers: pure float32 functions from router logits to expert choices and gate weights.

Router math is float32 whatever the compute dtype (bfloat16 inputs are routed in
float32); only a wider input (float64 under ``jax_enable_x64``) routes in its own dtype.
Shapes use ``T`` tokens (any leading batch dims work the same), ``E`` experts and
``k`` experts per token.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmoe.precision import accumulation_dtype


class Routing(NamedTuple):
    """Token-choice routing decision.

    Attributes:
      expert_ids: ``[..., k]`` int32 selected experts, best first; ``E`` marks an
        assignment removed by dynamic-k pruning (the "null expert": computes nothing).
      gates: ``[..., k]`` float32 combine weights (0 where pruned).
      probs: ``[..., E]`` float32 router distribution used by the load-balancing loss
        and the entropy metric (softmax; for sigmoid gating the scores normalised to sum 1).
    """

    expert_ids: jax.Array
    gates: jax.Array
    probs: jax.Array


def router_logits(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``[..., d_model] @ [d_model, E] → [..., E]`` in float32 (float64 for float64 x)."""
    dt = accumulation_dtype(x.dtype)
    return jnp.einsum(
        "...d,de->...e",
        x.astype(dt),
        kernel.astype(dt),
        precision=jax.lax.Precision.HIGHEST,
    )


def gate_scores(logits: jax.Array, gating: str) -> tuple[jax.Array, jax.Array]:
    """Returns ``(scores, probs)``, both ``[..., E]`` float32.

    ``softmax``: scores = probs = softmax(logits).
    ``sigmoid``: scores = sigmoid(logits) (each in (0, 1)), probs = scores / sum(scores).
    """
    logits = logits.astype(accumulation_dtype(logits.dtype))
    if gating == "softmax":
        probs = jax.nn.softmax(logits, axis=-1)
        return probs, probs
    if gating == "sigmoid":
        scores = jax.nn.sigmoid(logits)
        return scores, scores / jnp.sum(scores, axis=-1, keepdims=True)
    raise ValueError(f"unknown gating {gating!r}; choose 'softmax' or 'sigmoid'")


def token_choice(
    logits: jax.Array,
    top_k: int,
    *,
    gating: str = "softmax",
    renormalize: bool = False,
    bias: jax.Array | None = None,
    prune_threshold: float = 0.0,
) -> Routing:
    """Top-k token-choice routing (softmax-then-top-k, or sigmoid gating).

    Args:
      logits: ``[..., E]`` router logits (float32).
      top_k: k.
      gating: ``"softmax"`` or ``"sigmoid"``.
      renormalize: divide the k gate weights by their sum (before pruning).
      bias: optional ``[E]`` loss-free balancing bias. It is added to the scores used
        to *select* experts only; gate weights come from the unbiased scores, and no
        gradient flows into it.
      prune_threshold: dynamic-k inference pruning. Selected experts whose gate weight
        is below the threshold are replaced by the null expert ``E`` (gate 0) so that
        dispatch computes nothing for them. The best expert is always kept.

    Returns:
      ``Routing`` with ``expert_ids``/``gates`` ``[..., k]`` and ``probs`` ``[..., E]``.
    """
    num_experts = logits.shape[-1]
    scores, probs = gate_scores(logits, gating)
    select = scores if bias is None else scores + jax.lax.stop_gradient(bias).astype(scores.dtype)
    _, expert_ids = jax.lax.top_k(select, top_k)
    gates = jnp.take_along_axis(scores, expert_ids, axis=-1)
    if renormalize:
        gates = gates / jnp.sum(gates, axis=-1, keepdims=True)
    expert_ids = expert_ids.astype(jnp.int32)
    if prune_threshold > 0:
        keep = gates >= prune_threshold
        keep = keep.at[..., 0].set(True)
        expert_ids = jnp.where(keep, expert_ids, num_experts)
        gates = jnp.where(keep, gates, 0.0)
    return Routing(expert_ids, gates, probs)


def expert_choice(
    logits: jax.Array, capacity: int, *, gating: str = "softmax"
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Expert-choice routing (Zhou et al. 2022) within each sequence.

    Every expert takes the ``capacity`` tokens of the sequence with the highest score
    for it. Non-causal: a token's fate depends on later tokens, so use it only
    for encoders.

    Args:
      logits: ``[B, S, E]`` router logits (float32).
      capacity: C, tokens per expert per sequence (``C <= S``).

    Returns:
      ``(token_idx, gates, probs)``: ``[B, E, C]`` int32 positions within the sequence,
      ``[B, E, C]`` float32 gate weights, ``[B, S, E]`` float32 router distribution.
    """
    scores, probs = gate_scores(logits, gating)
    gates, token_idx = jax.lax.top_k(jnp.swapaxes(scores, -1, -2), capacity)
    return token_idx.astype(jnp.int32), gates, probs


def loss_free_bias_update(bias: jax.Array, load: jax.Array, rate: float) -> jax.Array:
    """DeepSeek loss-free balancing step: ``b + rate · sign(mean(load) − load)``.

    Args:
      bias: ``[E]`` current selection bias.
      load: ``[E]`` tokens routed to each expert in the last step(s).
      rate: u (1e-3 in arXiv:2408.15664).

    Overloaded experts (load above the mean) get a lower bias, so they are picked less.
    Apply it outside the gradient, after the optimiser step.
    """
    load = load.astype(jnp.float32)
    return bias + rate * jnp.sign(jnp.mean(load) - load).astype(bias.dtype)
