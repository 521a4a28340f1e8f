"""``MoELayer``: the Flax NNX module a transformer uses in place of its MLP.

It holds the parameters (with partitioning metadata) and calls the pure functions of
``jaxmoe.apply``. Example::

    layer = MoELayer(MoEConfig(d_model=256, num_experts=16, top_k=2, d_expert=256),
                     rngs=nnx.Rngs(0))
    y, aux = layer(x)            # x [batch, seq, 256]; add aux.loss to the LM loss
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmoe.apply import MoEAux, MoEParams, check_mesh, moe_forward
from jaxmoe.config import MoEConfig
from jaxmoe.metrics import pairwise_expert_similarity
from jaxmoe.routing import loss_free_bias_update


class RouterBias(nnx.Variable):
    """Loss-free balancing bias ``[E]``: not an ``nnx.Param``, so optimisers skip it."""


def _expert_init():
    # LeCun normal per expert: fan-in is the middle axis, axis 0 indexes experts.
    return jax.nn.initializers.variance_scaling(
        1.0, "fan_in", "truncated_normal", in_axis=-2, out_axis=-1, batch_axis=(0,)
    )


class MoELayer(nnx.Module):
    """Sparse Mixture-of-Experts SwiGLU layer with configurable routing, dispatch and losses.

    Parameters (NNX variables):
      ``router_kernel`` ``[d_model, E]`` (orthogonal init, replicated);
      ``router_bias`` ``[E]`` ``RouterBias`` (only with ``loss_free_bias``);
      ``w_gate``, ``w_up`` ``[E, d_model, d_expert]`` partitioned ``(expert, None, model)``;
      ``w_down`` ``[E, d_expert, d_model]`` partitioned ``(expert, model, None)``.
      The partitioning is stored as ``out_sharding`` metadata; with a ``mesh`` the values
      are also placed on it (axes the mesh lacks are replicated).

    Args:
      config: ``MoEConfig``.
      rngs: NNX RNG streams (``params`` is used).
      mesh: optional mesh with ``config.expert_axis`` (and data axes); the layer then
        runs expert-parallel inside ``jax.shard_map``.

    Raises:
      ValueError: when ``num_experts`` does not divide by the expert-axis size (other
        checks happen in ``MoEConfig``).
    """

    def __init__(self, config: MoEConfig, *, rngs: nnx.Rngs, mesh: Mesh | None = None):
        if not isinstance(config, MoEConfig):
            raise ValueError(f"config must be a MoEConfig, got {type(config).__name__}")
        if mesh is not None:
            check_mesh(mesh, config)
        self.config = config
        self.mesh = mesh
        c = config
        ex, mdl = c.expert_axis, c.model_axis
        self.router_kernel = self._variable(
            nnx.Param,
            jax.nn.initializers.orthogonal()(
                rngs.params(), (c.d_model, c.num_experts), c.param_dtype
            ),
            (None, None),
        )
        init = _expert_init()
        shape_in = (c.num_experts, c.d_model, c.d_expert)
        self.w_gate = self._variable(
            nnx.Param, init(rngs.params(), shape_in, c.param_dtype), (ex, None, mdl)
        )
        self.w_up = self._variable(
            nnx.Param, init(rngs.params(), shape_in, c.param_dtype), (ex, None, mdl)
        )
        shape_out = (c.num_experts, c.d_expert, c.d_model)
        self.w_down = self._variable(
            nnx.Param, init(rngs.params(), shape_out, c.param_dtype), (ex, mdl, None)
        )
        self.router_bias = (
            self._variable(RouterBias, jnp.zeros((c.num_experts,), jnp.float32), (None,))
            if c.loss_free_bias
            else None
        )

    def _variable(self, kind, value, names):
        if self.mesh is not None:
            spec = P(*(n if n in self.mesh.axis_names else None for n in names))
            value = jax.device_put(value, NamedSharding(self.mesh, spec))
        return kind(value, out_sharding=names, eager_sharding=False)

    def params(self) -> MoEParams:
        """The current arrays as ``MoEParams`` (what the pure functions take)."""
        bias = None if self.router_bias is None else self.router_bias[...]
        return MoEParams(
            self.router_kernel[...], bias, self.w_gate[...], self.w_up[...], self.w_down[...]
        )

    def __call__(
        self, x: jax.Array, *, prune_threshold: float | None = None
    ) -> tuple[jax.Array, MoEAux]:
        """Applies the layer.

        Args:
          x: ``[batch, seq, d_model]`` (or ``[tokens, d_model]``, treated as one sequence).
          prune_threshold: dynamic-k threshold overriding the config (inference).

        Returns:
          ``(y, aux)``: y shaped like x; ``aux.loss`` is the weighted sum of the configured
          auxiliary losses, ``aux.losses`` / ``aux.metrics`` the parts (see ``MoEAux``).
        """
        return moe_forward(
            self.params(), x, self.config, mesh=self.mesh, prune_threshold=prune_threshold
        )

    def update_router_bias(self, tokens_per_expert: jax.Array) -> None:
        """Loss-free balancing step ``b += u · sign(mean_load − load)`` (outside the gradient).

        Args:
          tokens_per_expert: ``[E]`` load, e.g. ``aux.metrics["tokens_per_expert"]``.
        """
        if self.router_bias is None:
            raise ValueError("update_router_bias needs MoEConfig(loss_free_bias=True)")
        self.router_bias[...] = loss_free_bias_update(
            self.router_bias[...], tokens_per_expert, self.config.bias_update_rate
        )

    def expert_similarity(self, x: jax.Array) -> jax.Array:
        """PES of this layer on sampled inputs ``x [N, d_model]`` (runs all experts)."""
        w_in = jnp.concatenate([self.w_gate[...], self.w_up[...]], axis=-1)
        return pairwise_expert_similarity(x, w_in, self.w_down[...])
