"""Routing metrics: cheap training-time ones and the evaluation-time PES / consistency.

Definitions follow ``shared/papers/moe-simbal.md`` §3:

* tokens per expert: assignments routed to each expert (before capacity drops);
* unique experts: experts that received at least one assignment;
* SEU: fraction of the E experts used within a sequence, averaged over sequences;
* MaxVio (arXiv:2408.15664): ``(max_i load_i − mean load) / mean load``;
* routing entropy: mean over tokens of the router distribution's entropy, in nats
  (max ``ln E``);
* orthogonality MSE: ``mean((RᵀR − I)²)`` over the E×E entries;
* PES: mean over sampled tokens of the mean pairwise cosine similarity of all N
  experts' outputs on that token (lower = less redundant experts);
* routing consistency: expert overlap of each token with its nearest neighbour
  (cosine, in the router's input space) against random pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxmoe.experts import all_experts_swiglu
from jaxmoe.losses import gram_minus_identity


def unique_experts(load: jax.Array) -> jax.Array:
    """Number of experts with non-zero ``load [E]`` (float32 scalar)."""
    return jnp.sum(load > 0).astype(jnp.float32)


def sequence_expert_utilisation(token_fraction: jax.Array) -> jax.Array:
    """SEU: mean over sequences of the fraction of experts used; ``token_fraction [B, E]``."""
    return jnp.mean(jnp.mean((token_fraction > 0).astype(jnp.float32), axis=-1))


def max_violation(load: jax.Array) -> jax.Array:
    """MaxVio ``(max load − mean load) / mean load`` for ``load [E]``; 0 when perfectly even."""
    load = load.astype(jnp.float32)
    mean = jnp.mean(load)
    return (jnp.max(load) - mean) / jnp.maximum(mean, 1e-9)


def token_entropy(probs: jax.Array) -> jax.Array:
    """Entropy in nats of each routing distribution: ``[..., E] → [...]``."""
    p = probs.astype(jnp.float32)
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1)


def routing_entropy(probs: jax.Array) -> jax.Array:
    """Mean per-token router entropy in nats over ``probs [..., E]``."""
    return jnp.mean(token_entropy(probs))


def orthogonality_mse(kernel: jax.Array) -> jax.Array:
    """``mean((RᵀR − I)²)`` for a router kernel ``[d_model, E]`` (SimBal Table 3's metric)."""
    return jnp.mean(jnp.square(gram_minus_identity(kernel)))


def pairwise_expert_similarity(x: jax.Array, w_in: jax.Array, w_out: jax.Array) -> jax.Array:
    """PES of one layer on sampled tokens (SimBal §3).

    Runs **all** N experts on each token, then averages ``cos(f_i(x), f_j(x))`` over the
    N(N−1)/2 pairs ``i < j`` and over tokens.

    Args:
      x: ``[N_tokens, d_model]`` sampled layer inputs.
      w_in: ``[E, d_model, 2·d_expert]`` fused gate/up weights.
      w_out: ``[E, d_expert, d_model]``.

    Returns:
      Scalar float32 in [−1, 1].
    """
    out = all_experts_swiglu(x, w_in, w_out).astype(jnp.float32)  # [N, E, d]
    unit = out / jnp.maximum(jnp.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
    cos = jnp.einsum("ned,nfd->nef", unit, unit)
    num_experts = cos.shape[-1]
    upper = jnp.triu(jnp.ones((num_experts, num_experts), bool), k=1)
    pairs = num_experts * (num_experts - 1) / 2
    return jnp.mean(jnp.sum(jnp.where(upper, cos, 0.0), axis=(-1, -2)) / pairs)


def min_over_layers(values: Sequence[jax.Array]) -> jax.Array:
    """Minimum of per-layer values (SimBal reports min-over-layers PES)."""
    return jnp.min(jnp.stack([jnp.asarray(v, jnp.float32) for v in values]))


def _overlap(a: jax.Array, b: jax.Array) -> jax.Array:
    """``|a ∩ b| / k`` for expert-id sets ``a, b [..., k]``."""
    hits = jnp.any(a[..., :, None] == b[..., None, :], axis=-1)
    return jnp.mean(hits.astype(jnp.float32), axis=-1)


def routing_consistency(
    x: jax.Array, expert_ids: jax.Array, key: jax.Array
) -> dict[str, jax.Array]:
    """How often similar tokens pick the same experts, against random pairs.

    For each sampled token, its nearest neighbour (highest cosine similarity of the
    router inputs, itself excluded) is found; the score is the mean fraction of the k
    experts the two share. The same is computed for one random partner per token.

    Args:
      x: ``[N, d_model]`` router inputs (keep N modest: an N×N similarity is formed).
      expert_ids: ``[N, k]`` experts each token selected.
      key: PRNG key for the random partners.

    Returns:
      ``{"neighbour": …, "random": …, "ratio": neighbour / random}`` float32 scalars.
    """
    n = x.shape[0]
    xf = x.astype(jnp.float32)
    unit = xf / jnp.maximum(jnp.linalg.norm(xf, axis=-1, keepdims=True), 1e-12)
    sim = unit @ unit.T - 3.0 * jnp.eye(n, dtype=jnp.float32)
    nearest = jnp.argmax(sim, axis=-1)
    partner = (jnp.arange(n) + jax.random.randint(key, (n,), 1, n)) % n
    neighbour = jnp.mean(_overlap(expert_ids, expert_ids[nearest]))
    rand = jnp.mean(_overlap(expert_ids, expert_ids[partner]))
    return {"neighbour": neighbour, "random": rand, "ratio": neighbour / jnp.maximum(rand, 1e-9)}
