"""``MoEConfig``: every knob of the MoE layer, validated once when it is built.

All checks that do not need the input shape happen here (or in ``MoELayer.__init__``
for the mesh), so bad settings fail with one ``ValueError`` naming the field instead
of deep inside XLA.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp

from jaxmoe.precision import check_floating

GATINGS = ("softmax", "sigmoid")
ROUTINGS = ("token_choice", "expert_choice")
DISPATCHES = ("dropless", "capacity")
#: Grouped-matmul backends of the dropless path (``"auto"``: see ``jaxmoe.grouped``).
GROUPED_MATMULS = ("auto", "tiled", "ragged_dot", "megablox")
#: Token exchanges of dropless expert parallelism (``"auto"``: see ``jaxmoe.parallel``).
EP_EXCHANGES = ("auto", "padded", "ragged", "ragged_emulated")

#: Auxiliary losses and their default coefficients.
#: ``simbal``: SimBal ``||RᵀR − I||₁`` (paper default 0.1).
#: ``lbl``: Switch/GShard load-balancing loss per sequence (0.01, OLMoE / the SimBal baseline).
#: ``z_loss``: router z-loss (ST-MoE's 1e-3).
DEFAULT_LOSS_COEFS = {"simbal": 0.1, "lbl": 0.01, "z_loss": 1e-3}
_LOSS_ALIASES = {"load_balancing": "lbl", "router_z": "z_loss"}


def _normalise_losses(losses: Any) -> tuple[tuple[str, float], ...]:
    """``{"simbal": 0.1}``, ``["simbal", "lbl"]``, ``(("lbl", 0.02),)`` or None → sorted pairs."""
    if losses is None:
        return ()
    if isinstance(losses, str):
        losses = [losses]
    if isinstance(losses, Mapping):
        items = list(losses.items())
    else:
        items = [(e, None) if isinstance(e, str) else tuple(e) for e in losses]
    out = {}
    for name, coef in items:
        if not isinstance(name, str):
            raise ValueError(f"loss names must be strings, got {name!r}")
        key = _LOSS_ALIASES.get(name, name)
        if key not in DEFAULT_LOSS_COEFS:
            raise ValueError(
                f"unknown loss {name!r}; known losses: {sorted(DEFAULT_LOSS_COEFS)} "
                f"(aliases {sorted(_LOSS_ALIASES)})"
            )
        coef = DEFAULT_LOSS_COEFS[key] if coef is None else float(coef)
        if coef < 0:
            raise ValueError(f"loss coefficient for {name!r} must be >= 0, got {coef}")
        out[key] = coef
    return tuple(sorted(out.items()))


def check_prune_threshold(value: Any) -> float:
    """``float(value)`` if it is a valid dynamic-k threshold in [0, 1), else ``ValueError``.

    Gate weights lie in [0, 1], so a threshold ≥ 1 would prune every expert but the first.
    """
    try:
        threshold = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"prune_threshold must be a number in [0, 1), got {value!r}") from err
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"prune_threshold must be in [0, 1), got {value!r}")
    return threshold


@dataclasses.dataclass(frozen=True)
class MoEConfig:
    """Static description of one MoE layer (hashable, so it can live on an NNX module).

    Attributes:
      d_model: token width.
      num_experts: E, experts in the layer.
      top_k: k, experts per token (token choice) or average experts per token
        (expert choice: each expert takes ``capacity_factor·S·k/E`` tokens per sequence).
      d_expert: hidden width of each SwiGLU expert.
      gating: ``"softmax"`` (softmax over E, then top-k: the SimBal paper) or
        ``"sigmoid"`` (independent sigmoid scores, DeepSeek-V3 style).
      renormalize: divide the k selected gate weights by their sum.
      routing: ``"token_choice"`` or ``"expert_choice"`` (non-causal: only for encoders).
      dispatch: ``"dropless"`` (sort + tiled grouped matmul, nothing dropped) or
        ``"capacity"`` (fixed ``[E, C]`` buffers, overflow dropped, TPU-friendly).
      capacity_factor: C = ceil(capacity_factor · tokens · k / E), at least ``min_capacity``,
        per device and call. ``E / k`` guarantees nothing is dropped.
      min_capacity: lower bound on C.
      losses: auxiliary losses, e.g. ``{"simbal": 0.1}``, ``("lbl", "z_loss")``
        (default coefficients from ``DEFAULT_LOSS_COEFS``) or ``()`` for none.
      loss_free_bias: keep a per-expert bias added to the selection scores only
        (DeepSeek loss-free balancing), updated with ``MoELayer.update_router_bias``.
      bias_update_rate: u in ``b += u · sign(mean_load − load)``.
      prune_threshold: dynamic-k inference pruning: drop selected experts whose gate
        weight is below this (the top-1 expert is always kept); 0 disables it.
      grouped_matmul: the dropless grouped-matmul backend: ``"tiled"`` (a loop over
        row tiles, fused with gather and scatter: the fast choice on CPU),
        ``"ragged_dot"`` (``jax.lax.ragged_dot`` on expert-sorted rows), ``"megablox"``
        (the Pallas TPU kernel ``jax.experimental.pallas.ops.tpu.megablox.gmm``; in
        interpret mode off TPU), or ``"auto"``: tiled on CPU, ragged_dot on GPU,
        megablox on TPU (by ``jax.default_backend()`` when the layer is traced).
      ep_exchange: token exchange of dropless expert parallelism: ``"padded"``
        (fixed blocks through ``all_to_all``, any backend), ``"ragged"``
        (``jax.lax.ragged_all_to_all``: only the rows that exist; GPU/TPU, XLA:CPU lacks
        it), ``"ragged_emulated"`` (the ragged bookkeeping through a padded
        ``all_to_all``: lets CPU tests check it) or ``"auto"`` (ragged on GPU/TPU, padded
        elsewhere).
      tile_size: rows per top-level tile of the tiled grouped matmul (each expert's
        remainder takes at most one tile per smaller level, see
        ``jaxmoe.dispatch.TileLayout``); None picks the power of two ≤ T·k/(2E) between
        8 and 512.
      ep_buffer_factor: dropless expert parallelism sends fixed-size blocks with
        ``all_to_all``. None (default) sizes them for the worst case so nothing can be
        dropped; a float f uses ``ceil(f · tokens · k / num_shards)`` rows per block
        (less memory and traffic; overflow is dropped and counted).
      expert_axis: mesh axis that shards the experts.
      data_axes: mesh axes that shard the batch (together with ``expert_axis``).
      model_axis: mesh axis named in the expert weights' partitioning metadata for the
        d_expert dimension (metadata only: inside the expert-parallel layer weights are
        gathered over it).
      dtype: compute dtype of the expert matmuls, a float (router math is float32;
        a wider input, e.g. float64, computes in its own dtype: ``jaxmoe.precision``).
      param_dtype: parameter dtype, a float (initialised in float32, then cast).
    """

    d_model: int
    num_experts: int
    top_k: int
    d_expert: int
    gating: str = "softmax"
    renormalize: bool = False
    routing: str = "token_choice"
    dispatch: str = "dropless"
    capacity_factor: float = 1.25
    min_capacity: int = 4
    losses: Any = (("simbal", 0.1),)
    loss_free_bias: bool = False
    bias_update_rate: float = 1e-3
    prune_threshold: float = 0.0
    grouped_matmul: str = "auto"
    ep_exchange: str = "auto"
    tile_size: int | None = None
    ep_buffer_factor: float | None = None
    expert_axis: str = "expert"
    data_axes: Sequence[str] = ("data",)
    model_axis: str | None = "model"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("losses", _normalise_losses(self.losses))
        set_("data_axes", tuple(self.data_axes))
        for name in ("d_model", "num_experts", "top_k", "d_expert", "min_capacity"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.top_k > self.num_experts:
            raise ValueError(
                f"top_k={self.top_k} exceeds num_experts={self.num_experts}: a token cannot "
                "pick more experts than exist"
            )
        if self.gating not in GATINGS:
            raise ValueError(f"unknown gating {self.gating!r}; choose one of {GATINGS}")
        if self.routing not in ROUTINGS:
            raise ValueError(f"unknown routing {self.routing!r}; choose one of {ROUTINGS}")
        if self.dispatch not in DISPATCHES:
            raise ValueError(f"unknown dispatch {self.dispatch!r}; choose one of {DISPATCHES}")
        if self.grouped_matmul not in GROUPED_MATMULS:
            raise ValueError(
                f"unknown grouped_matmul {self.grouped_matmul!r}; choose one of {GROUPED_MATMULS}"
            )
        if self.ep_exchange not in EP_EXCHANGES:
            raise ValueError(
                f"unknown ep_exchange {self.ep_exchange!r}; choose one of {EP_EXCHANGES}"
            )
        check_floating("dtype", self.dtype)
        check_floating("param_dtype", self.param_dtype)
        if not self.capacity_factor > 0:
            raise ValueError(f"capacity_factor must be > 0, got {self.capacity_factor}")
        check_prune_threshold(self.prune_threshold)
        if self.tile_size is not None and (self.tile_size < 1 or self.tile_size % 8):
            raise ValueError(f"tile_size must be a positive multiple of 8, got {self.tile_size}")
        if self.ep_buffer_factor is not None and not self.ep_buffer_factor > 0:
            raise ValueError(f"ep_buffer_factor must be > 0 or None, got {self.ep_buffer_factor}")
        if self.bias_update_rate < 0:
            raise ValueError(f"bias_update_rate must be >= 0, got {self.bias_update_rate}")
        if self.expert_axis in self.data_axes:
            raise ValueError(f"expert_axis {self.expert_axis!r} also appears in data_axes")

    @property
    def loss_coefs(self) -> dict[str, float]:
        """Configured auxiliary losses as ``{name: coefficient}``."""
        return dict(self.losses)
