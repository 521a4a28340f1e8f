"""``MoELayer``: the Flax NNX module a transformer uses in place of its MLP.

It holds the parameters (with partitioning metadata) and calls the pure functions of
``jaxmoe.apply``. Example::

    layer = MoELayer(MoEConfig(d_model=256, num_experts=16, top_k=2, d_expert=256),
                     rngs=nnx.Rngs(0))
    y, aux = layer(x)            # x [batch, seq, 256]; add aux.loss to the LM loss
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcommon.initializers import orthogonal
from jaxmoe.apply import MoEAux, MoEParams, check_mesh, fused_w_in, moe_forward
from jaxmoe.config import MoEConfig
from jaxmoe.metrics import pairwise_expert_similarity
from jaxmoe.routing import loss_free_bias_update


class RouterBias(nnx.Variable):
    """Loss-free balancing bias ``[E]``: not an ``nnx.Param``, so optimisers skip it."""


def _expert_init(in_axis: int = -2, out_axis=-1):
    # LeCun normal per expert: fan-in is the d_model / d_expert axis, axis 0 indexes experts.
    return jax.nn.initializers.variance_scaling(
        1.0, "fan_in", "truncated_normal", in_axis=in_axis, out_axis=out_axis, batch_axis=(0,)
    )


def _router_init(key: jax.Array, d_model: int, num_experts: int) -> jax.Array:
    """Orthogonal ``[d_model, E]`` in float32, cast after (``jaxcommon.initializers``: the same
    values as ``jax.nn.initializers.orthogonal`` without its LAPACK QR, which deadlocks
    XLA:CPU when several batched calls run at once).

    With ``d_model >= E`` the E columns are orthonormal (SimBal's loss is 0 at init).
    With ``d_model < E`` at most d_model columns can be orthogonal: the *rows* are
    orthonormal instead, ``RᵀR`` is a rank-d_model projection and ``||RᵀR − I||₁`` starts
    well above 0 and can never reach it, so a ``UserWarning`` says so.
    """
    if d_model < num_experts:
        warnings.warn(
            f"d_model={d_model} < num_experts={num_experts}: the orthogonal router init "
            "cannot make the expert columns orthonormal (rank ≤ d_model), and SimBal's "
            "||RᵀR − I||₁ cannot reach 0",
            UserWarning,
            stacklevel=3,
        )
    return orthogonal()(key, (d_model, num_experts), jnp.float32)


class MoELayer(nnx.Module):
    """Sparse Mixture-of-Experts SwiGLU layer with configurable routing, dispatch and losses.

    Parameters (NNX variables), all initialised in float32 and cast to ``param_dtype``:
      ``router_kernel`` ``[d_model, E]`` (orthogonal init, replicated; see
      ``_router_init`` for ``d_model < E``);
      ``router_bias`` ``[E]`` ``RouterBias`` (only with ``loss_free_bias``);
      ``w_gate_up`` ``[E, d_model, 2, d_expert]`` gate (``[:, :, 0]``) and up
      (``[:, :, 1]``) projections stored fused, partitioned ``(expert, None, None, model)``;
      ``w_down`` ``[E, d_expert, d_model]`` partitioned ``(expert, model, None)``.
      ``w_gate`` / ``w_up`` are read-only ``[E, d_model, d_expert]`` views.
      The partitioning is stored as ``out_sharding`` metadata; with a ``mesh`` the values
      are also placed on it (axes the mesh lacks are replicated: a mesh without the
      expert axis replicates the experts and splits only the batch).

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
            _router_init(rngs.params(), c.d_model, c.num_experts).astype(c.param_dtype),
            (None, None),
        )
        shape_in = (c.num_experts, c.d_model, 2, c.d_expert)
        w_gate_up = _expert_init(1, (2, 3))(rngs.params(), shape_in, jnp.float32)
        self.w_gate_up = self._variable(
            nnx.Param, w_gate_up.astype(c.param_dtype), (ex, None, None, mdl)
        )
        shape_out = (c.num_experts, c.d_expert, c.d_model)
        w_down = _expert_init()(rngs.params(), shape_out, jnp.float32)
        self.w_down = self._variable(nnx.Param, w_down.astype(c.param_dtype), (ex, mdl, None))
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
        return MoEParams(self.router_kernel[...], bias, self.w_gate_up[...], self.w_down[...])

    @property
    def w_gate(self) -> jax.Array:
        """``[E, d_model, d_expert]`` gate projection (a view of ``w_gate_up``)."""
        return self.w_gate_up[...][:, :, 0]

    @property
    def w_up(self) -> jax.Array:
        """``[E, d_model, d_expert]`` up projection (a view of ``w_gate_up``)."""
        return self.w_gate_up[...][:, :, 1]

    def __call__(
        self, x: jax.Array, *, prune_threshold: float | None = None
    ) -> tuple[jax.Array, MoEAux]:
        """Applies the layer.

        Args:
          x: ``[batch, seq, d_model]`` (or ``[tokens, d_model]``, treated as one sequence).
          prune_threshold: dynamic-k threshold in [0, 1) overriding the config (inference).

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
        return pairwise_expert_similarity(x, fused_w_in(self.w_gate_up[...]), self.w_down[...])
