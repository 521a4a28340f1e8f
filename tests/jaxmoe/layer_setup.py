"""Shared setup of the layer-equality tests: a small layer, its input and a fixed cotangent."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmoe import MoEConfig, MoELayer, moe_forward

D, E, K, F = 16, 8, 2, 8  # d_model, experts, top-k, d_expert


def setup(batch: int, seq: int, **kw):
    """``(cfg, params, x [batch, seq, D], cot [batch, seq, D])`` with fixed seeds."""
    cfg = MoEConfig(d_model=D, num_experts=E, top_k=K, d_expert=F, **kw)
    params = MoELayer(cfg, rngs=nnx.Rngs(0)).params()
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(batch, seq, D)), jnp.float32)
    cot = jnp.asarray(rng.normal(size=(batch, seq, D)), jnp.float32)
    return cfg, params, x, cot


def run(cfg, params, x, cot, mesh=None, prune_threshold=None):
    """``(y, grads of (params, x), MoEAux)`` of ``Σ y·cot + aux.loss``, jitted."""

    def loss(p, x):
        y, aux = moe_forward(p, x, cfg, mesh=mesh, prune_threshold=prune_threshold)
        return jnp.sum(y * cot) + aux.loss, (y, aux)

    grads, (y, aux) = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(params, x)
    return y, grads, aux
