"""Auxiliary routing losses: pure, jittable, float32, one MoE layer each.

Normalisations (codebases differ by factors of k and of the layer count):

* Every function returns the loss of **one layer** without its coefficient;
  ``MoELayer`` multiplies by the configured coefficient. Across layers we recommend
  **summing** (the literal reading of the SimBal paper: one term per router); t5x and
  MaxText average instead, which divides the effective coefficient by the depth.
* ``load_balancing_loss`` follows the SimBal paper's baseline (the st-moe-pytorch code
  in its appendix): per sequence, ``E · Σ_i f_i · P_i`` with ``f_i`` the fraction of the
  sequence's tokens that have expert i among their k choices (so ``Σ_i f_i = k``),
  averaged over sequences. Its value at perfect balance is therefore **k**, not 1
  (flaxformer/MaxText use the same scale; MegaBlocks divides by k).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_HI = jax.lax.Precision.HIGHEST


def gram_minus_identity(kernel: jax.Array) -> jax.Array:
    """``KᵀK − I_E`` for a router kernel ``K [d_model, E]`` (the E×E Gram of its columns)."""
    k = kernel.astype(jnp.float32)
    gram = jnp.matmul(k.T, k, precision=_HI)
    return gram - jnp.eye(k.shape[1], dtype=jnp.float32)


def simbal_loss(kernel: jax.Array) -> jax.Array:
    """SimBal (arXiv:2506.14038, Eq. 4): ``||RᵀR − I_E||₁``, the **sum** of absolute entries.

    Args:
      kernel: router weight R as stored by a Flax Dense layer, ``[d_model, E]``. The Gram
        taken is ``RᵀR`` (E×E), i.e. the paper's ``W·Wᵀ`` on PyTorch's ``[E, d_model]``
        weight. Columns are not normalised; the loss does not depend on data.

    Returns:
      Scalar float32; 0 iff the E expert columns are orthonormal. Cost: one
      ``E × d_model × E`` matmul.

    At (near-)orthogonal kernels, e.g. right after the orthogonal initialisation, the
    entries of ``RᵀR − I`` are rounding noise, so the sign in the L1 subgradient
    ``R·(sign(G−I) + sign(G−I)ᵀ)`` is arbitrary there and may differ between runs that
    round differently (eager vs jit); its size is bounded by ``coef·2E·|R|``.
    """
    return jnp.sum(jnp.abs(gram_minus_identity(kernel)))


def load_balancing_loss(token_fraction: jax.Array, mean_probs: jax.Array) -> jax.Array:
    """Switch/GShard load-balancing loss computed per sequence: ``mean_b E · Σ_i f_bi P_bi``.

    Args:
      token_fraction: ``[B, E]`` f_bi, the fraction of sequence b's tokens that have
        expert i among their k choices (rows sum to k; pruned choices excluded).
      mean_probs: ``[B, E]`` P_bi, the mean over sequence b of the router distribution.

    Returns:
      Scalar float32; k at perfect balance (see module docstring). Gradients flow
      through ``mean_probs`` only (``token_fraction`` comes from a top-k).
    """
    num_experts = token_fraction.shape[-1]
    f = jax.lax.stop_gradient(token_fraction.astype(jnp.float32))
    per_seq = jnp.sum(f * mean_probs.astype(jnp.float32), axis=-1)
    return num_experts * jnp.mean(per_seq)


def sequence_routing_stats(expert_ids: jax.Array, probs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(token_fraction, mean_probs)``, both ``[B, E]``, from ``[B, S, k]`` ids and ``[B, S, E]``.

    Ids equal to E (pruned) are ignored.
    """
    num_experts = probs.shape[-1]
    onehot = jax.nn.one_hot(expert_ids, num_experts, dtype=jnp.float32)  # [B, S, k, E]
    token_fraction = jnp.mean(jnp.sum(onehot, axis=-2), axis=-2)
    return token_fraction, jnp.mean(probs.astype(jnp.float32), axis=-2)


def router_z_loss(logits: jax.Array) -> jax.Array:
    """ST-MoE router z-loss: mean over tokens of ``(log Σ_j exp logits_j)²``.

    Args:
      logits: ``[..., E]`` router logits.
    """
    lse = jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1)
    return jnp.mean(jnp.square(lse))
