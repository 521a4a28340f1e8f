"""Polytropon / Multi-Head Routing (MHR) skill adapters for any Flax NNX ``Linear`` or ``Conv``.

A shared inventory of ``s`` LoRA skills of rank ``r``, split into ``h`` heads, is added to a
frozen layer ``W``; each row of a batch mixes the skills with its own weights ``α``
(Caccia et al.; microsoft/mttl ``PolyLoRALinear``, HF PEFT ``poly``):

.. math::

    α_{k,j} = \\frac{σ(Z_{k,j})}{\\sum_{j'} σ(Z_{k,j'}) + 10^{-12}},\\qquad
    A^{(k)} = \\sum_j α_{k,j} A_{k,j},\\quad B^{(k)} = \\sum_j α_{k,j} B_{k,j}

    y = W x + b + \\frac{c}{r}\\,\\Big(\\sum_k x^{(k)} A^{(k)}\\Big)\\, [B^{(1)} \\cdots B^{(h)}]

with ``x^{(k)}`` the k-th block of the input features, ``A [h, s, d_in/h, r]`` (Kaiming-uniform),
``B [h, s, r, d_out/h]`` (zeros, so training starts from the base layer) and ``c = alpha``
(1 by default, as in Poly). Poly is ``h = 1``.

The mixing runs in *skill space*: ``x`` goes through every skill's ``A`` at once (one matmul
per head), the ``h·s`` projections are weighted by the row's ``α`` and summed, then the
result, weighted again per skill, goes through every ``B``. No per-player adapter is ever
materialised and there is no loop over players, so one batch can mix thousands of players at
a cost of ``s·r·(d_in + d_out)`` extra multiply-adds per row (vs ``d_in·d_out`` of the layer).

For a convolution (LoCon style) ``A`` is a grouped convolution with the base layer's kernel,
strides and padding (``C_in/h → s·r`` per head) and ``B`` a 1×1 convolution.

Usage — wrap any module, then call it inside :func:`mixing`::

    model, layers = adapters.wrap(model, SkillConfig(num_skills=8, num_heads=4, rank=4),
                                  rngs=nnx.Rngs(0))
    z = ...                                           # [batch, routing_size(config, layers)]
    with adapters.mixing(adapters.mixing_weights(z, config, layers)):
        y = model(x)                                  # every wrapped layer mixes per row

Inside :func:`mixing` with ``None`` the wrapped layers act as their base layers. Calling a
wrapped layer outside any :func:`mixing` block is an error (so a forgotten style vector never
passes silently). The context is read while tracing, so enter it inside the jitted function.

Parameter types: skill factors are :class:`Skill` and routing logits :class:`Routing`
(both subclasses of ``nnx.Param``), so optimisers and freezing pick them by type.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
from flax import nnx


class Skill(nnx.Param):
    """LoRA skill factors ``A`` / ``B`` of an MHR layer."""


class Routing(nnx.Param):
    """Routing logits ``Z`` (the style table)."""


@dataclasses.dataclass(frozen=True)
class SkillConfig:
    """Layout of the skill inventory.

    Attributes:
      num_skills: ``s``, skills per head.
      num_heads: ``h`` (``n_splits``); must divide every adapted layer's input and output size.
      rank: ``r``, LoRA rank of every skill.
      shared_routing: one style vector for all adapted layers (mttl "coarsegrained");
        ``False`` gives every layer its own ``h·s`` block of the style vector.
      alpha: the adapter output is scaled by ``alpha / rank``.
      conv_kernel: ``"full"`` — a convolution's ``A`` has the layer's kernel (LoCon);
        ``"pointwise"`` — ``A`` is 1×1 (a per-pixel linear adapter, much cheaper; needs a
        stride-1 ``SAME`` layer).
    """

    num_skills: int = 8
    num_heads: int = 4
    rank: int = 4
    shared_routing: bool = True
    alpha: float = 1.0
    conv_kernel: str = "full"

    def __post_init__(self):
        if self.conv_kernel not in ("full", "pointwise"):
            raise ValueError(f"conv_kernel must be 'full' or 'pointwise', got {self.conv_kernel!r}")
        for name in ("num_skills", "num_heads", "rank"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SkillConfig.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def block_size(self) -> int:
        """``h·s``: routing logits per selector."""
        return self.num_heads * self.num_skills


def routing_size(config: SkillConfig, num_layers: int) -> int:
    """Length ``R`` of a style vector: ``h·s`` shared, or ``num_layers·h·s`` per layer."""
    return config.block_size * (1 if config.shared_routing else num_layers)


def mixing_weights(logits: jax.Array, config: SkillConfig, num_layers: int) -> jax.Array:
    """Normalised-sigmoid skill weights of each row.

    Args:
      logits: ``[batch, R] float32`` routing logits (style vectors), ``R`` =
        :func:`routing_size`.
    Returns:
      ``[batch, L, h, s] float32`` with ``L = 1`` (shared) or ``num_layers``; sums to 1 over ``s``.

    Raises:
      ValueError: when ``R`` does not match the layout.
    """
    size = routing_size(config, num_layers)
    if logits.ndim != 2 or logits.shape[-1] != size:
        raise ValueError(
            f"style vectors must be [batch, {size}] for {num_layers} adapted layers with "
            f"h={config.num_heads}, s={config.num_skills}"
            f"{'' if config.shared_routing else ' per layer'}, got shape {tuple(logits.shape)}"
        )
    with jax.named_scope("mhr_mixing_weights"):
        gates = jax.nn.sigmoid(logits.astype(jnp.float32))
        gates = gates.reshape(logits.shape[0], -1, config.num_heads, config.num_skills)
        return gates / (gates.sum(-1, keepdims=True) + 1e-12)


_MIXING: contextvars.ContextVar = contextvars.ContextVar("jaxstyle_mixing")
_UNSET = object()


@contextlib.contextmanager
def mixing(weights: jax.Array | None) -> Iterator[None]:
    """Sets the skill weights ``[batch, L, h, s]`` that wrapped layers use (``None``: base only)."""
    token = _MIXING.set(weights)
    try:
        yield
    finally:
        _MIXING.reset(token)


def current_mixing() -> jax.Array | None:
    """The weights set by the innermost :func:`mixing` block (error outside any block)."""
    weights = _MIXING.get(_UNSET)
    if weights is _UNSET:
        raise RuntimeError(
            "an MHR-adapted layer was called outside `with jaxstyle.adapters.mixing(...)`; "
            "pass style vectors (or mixing(None) for the base model)"
        )
    return weights


def skill_delta(x: jax.Array, a: jax.Array, b: jax.Array, alpha: jax.Array) -> jax.Array:
    """Adapter output of a Linear layer, mixed per row in skill space (unscaled).

    Args:
      x: ``[batch, ..., d_in]`` inputs.
      a: ``[h, s, d_in/h, r]`` down-projections of every skill.
      b: ``[h, s, r, d_out/h]`` up-projections.
      alpha: ``[batch, h, s]`` each row's skill weights.
    Returns:
      ``[batch, ..., d_out]``: ``(Σ_k x^(k) A_α^(k)) [B_α^(1) … B_α^(h)]``.
    """
    h, s, d_head, r = a.shape
    # One 2-D matmul per head (h is a small static count): on XLA:CPU this is ~1.5× faster
    # than a batched einsum over heads, and only the feature axis is ever split or merged,
    # so a batch sharded over a mesh stays valid.
    us = [
        x[..., k * d_head : (k + 1) * d_head] @ a[k].transpose(1, 0, 2).reshape(d_head, s * r)
        for k in range(h)
    ]
    return _skill_up(us, b, alpha)


def _skill_up(us: list[jax.Array], b: jax.Array, alpha: jax.Array) -> jax.Array:
    """Per input head ``k``, ``us[k] [batch, ..., s·r]`` (x through head k's A of every
    skill) → ``[batch, ..., d_out]``: weight by ``α``, sum (``x·A_α``), weight again, ``B``."""
    h, s, r, d_head = b.shape
    dtype = us[0].dtype
    lead = us[0].ndim - 2
    weights = [
        alpha[:, k].reshape(alpha.shape[0], *([1] * lead), s, 1).astype(dtype) for k in range(h)
    ]
    v = sum(
        (u.reshape(*u.shape[:-1], s, r) * w).sum(-2) for u, w in zip(us, weights)
    )  # [batch, ..., r]: x·A_α, summed over the input heads
    outs = [
        (v[..., None, :] * weights[k]).reshape(*v.shape[:-1], s * r)
        @ b[k].astype(dtype).reshape(s * r, d_head)
        for k in range(h)
    ]
    return jnp.concatenate(outs, axis=-1)


def _uniform(key, shape, bound, dtype):
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class MHRLinear(nnx.Module):
    """An ``nnx.Linear`` plus an MHR skill adapter (reads its weights from :func:`mixing`).

    Attributes:
      base: the wrapped layer (its parameters stay ``nnx.Param``).
      a: ``Skill [h, s, d_in/h, r]``, Kaiming-uniform (a=√5) over the fan-in ``d_in/h``.
      b: ``Skill [h, s, r, d_out/h]``, zeros.
      layer_index: position among the adapted layers of the model.
      block: which ``h·s`` block of the style vector it reads (0 with shared routing).
    """

    def __init__(self, base: nnx.Linear, config: SkillConfig, *, layer_index: int, rngs: nnx.Rngs):
        h, s, r = config.num_heads, config.num_skills, config.rank
        d_in, d_out = base.in_features, base.out_features
        _check_divisible("Linear", d_in, d_out, h)
        self.base = base
        self.layer_index = layer_index
        self.block = 0 if config.shared_routing else layer_index
        self.scale = config.alpha / r
        dtype = base.param_dtype
        self.a = Skill(
            _uniform(rngs.params(), (h, s, d_in // h, r), 1 / math.sqrt(d_in // h), dtype)
        )
        self.b = Skill(jnp.zeros((h, s, r, d_out // h), dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.base(x)
        weights = current_mixing()
        if weights is None:
            return y
        with jax.named_scope("mhr_linear"):
            alpha = weights[:, self.block]
            delta = skill_delta(x.astype(y.dtype), self.a[...], self.b[...], alpha)
            return y + self.scale * delta


class MHRConv(nnx.Module):
    """An ``nnx.Conv`` (channels last) plus a LoCon-style MHR adapter.

    ``A`` is a grouped convolution with the base kernel size, strides, padding and dilation
    (``C_in/h → s·r`` per head); ``B`` is 1×1.

    Attributes:
      base: the wrapped layer.
      a: ``Skill [h, s, *kernel_size, C_in/h, r]`` (``[h, s, C_in/h, r]`` pointwise),
        Kaiming-uniform over ``kernel area · C_in/h``.
      b: ``Skill [h, s, r, C_out/h]``, zeros.
      layer_index: position among the adapted layers of the model.
      block: which ``h·s`` block of the style vector it reads (0 with shared routing).
    """

    def __init__(self, base: nnx.Conv, config: SkillConfig, *, layer_index: int, rngs: nnx.Rngs):
        h, s, r = config.num_heads, config.num_skills, config.rank
        if base.feature_group_count != 1 or base.input_dilation not in (1, None, (1,) * 2):
            raise ValueError("MHRConv wraps ungrouped convolutions without input dilation only")
        c_in, c_out = base.in_features, base.out_features
        _check_divisible("Conv", c_in, c_out, h)
        self.base = base
        self.layer_index = layer_index
        self.block = 0 if config.shared_routing else layer_index
        self.scale = config.alpha / r
        kernel = tuple(base.kernel_size)
        self.pointwise = config.conv_kernel == "pointwise"
        if self.pointwise:
            if _tuple(base.strides, len(kernel)) != (1,) * len(kernel) or base.padding != "SAME":
                raise ValueError("conv_kernel='pointwise' needs a stride-1 'SAME' convolution")
            kernel = ()
        fan_in = math.prod(kernel) * (c_in // h)
        dtype = base.param_dtype
        self.a = Skill(
            _uniform(rngs.params(), (h, s, *kernel, c_in // h, r), 1 / math.sqrt(fan_in), dtype)
        )
        self.b = Skill(jnp.zeros((h, s, r, c_out // h), dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.base(x)
        weights = current_mixing()
        if weights is None:
            return y
        with jax.named_scope("mhr_conv"):
            alpha = weights[:, self.block]
            if self.pointwise:
                return y + self.scale * skill_delta(
                    x.astype(y.dtype), self.a[...], self.b[...], alpha
                )
            us = self._project(x.astype(y.dtype))  # h × [batch, *spatial, s·r]
            return y + self.scale * _skill_up(us, self.b[...], alpha)

    def _project(self, x: jax.Array) -> list[jax.Array]:
        """``x [batch, *spatial, C_in]`` through all skills' ``A`` → h × ``[batch, *out, s·r]``.

        One ungrouped convolution per head over that head's input channels (``h`` is a
        small static count; XLA:CPU runs this several times faster than one grouped conv).
        """
        a = self.a[...].astype(x.dtype)
        h, s, r = a.shape[0], a.shape[1], a.shape[-1]
        nd = a.ndim - 4  # spatial dims
        spatial = "DHW"[-nd:]
        heads = x.reshape(*x.shape[:-1], h, x.shape[-1] // h)
        base = self.base
        outs = []
        for k in range(h):
            # [s, *k, c/h, r] → [*k, c/h, s·r]
            kernel = jnp.moveaxis(a[k], 0, nd + 1).reshape(*a.shape[2 : 3 + nd], s * r)
            dims = jax.lax.conv_dimension_numbers(
                heads[..., k, :].shape,
                kernel.shape,
                (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"),
            )
            outs.append(
                jax.lax.conv_general_dilated(
                    heads[..., k, :],
                    kernel,
                    window_strides=_tuple(base.strides, nd),
                    padding=_padding(base.padding, nd),
                    rhs_dilation=_tuple(base.kernel_dilation, nd),
                    dimension_numbers=dims,
                )
            )
        return outs


def _tuple(value, nd: int) -> tuple[int, ...]:
    if value is None:
        return (1,) * nd
    if isinstance(value, int):
        return (value,) * nd
    return tuple(value)


def _padding(padding, nd: int):
    if isinstance(padding, str):
        return padding
    if isinstance(padding, int):
        return [(padding, padding)] * nd
    return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


def _check_divisible(kind: str, d_in: int, d_out: int, heads: int) -> None:
    if d_in % heads or d_out % heads:
        raise ValueError(
            f"num_heads={heads} must divide the {kind} layer's input ({d_in}) and output "
            f"({d_out}) sizes"
        )


def _default_include(path: tuple, module: nnx.Module) -> bool:
    return True


def wrap(
    model: nnx.Module,
    config: SkillConfig,
    *,
    rngs: nnx.Rngs,
    include: Callable[[tuple, nnx.Module], bool] = _default_include,
) -> tuple[nnx.Module, int]:
    """Replaces every ``nnx.Linear`` / ``nnx.Conv`` in ``model`` (in place) by its MHR version.

    Args:
      model: any NNX module (layers may sit in attributes or ``nnx.List``).
      config: skill layout.
      rngs: for the ``A`` initialisation.
      include: ``include(path, layer) -> bool`` picks the layers to adapt (default: all).
    Returns:
      ``(model, num_layers)``; layers get indices ``0 … num_layers-1`` in graph order.
    """
    targets = [
        (path, module)
        for path, module in nnx.iter_modules(model)
        if path and type(module) in (nnx.Linear, nnx.Conv) and include(path, module)
    ]
    for index, (path, module) in enumerate(targets):
        cls = MHRLinear if isinstance(module, nnx.Linear) else MHRConv
        parent = model
        for key in path[:-1]:
            parent = parent[key] if isinstance(key, int) else getattr(parent, key)
        wrapped = cls(module, config, layer_index=index, rngs=rngs)
        if isinstance(path[-1], int):
            parent[path[-1]] = wrapped
        else:
            setattr(parent, path[-1], wrapped)
    return model, len(targets)


class StyleTable(nnx.Module):
    """Routing logits ``Z [num_players, R]`` (one style vector per player), uniform(±1e-3).

    Call with ``players [batch] int32`` → ``[batch, R] float32``. Ids are checked when they
    are concrete (outside ``jit``); inside ``jit`` check them before the call. The table may
    be sharded by rows over a mesh axis (:func:`shard_rows`); lookups then stay sharded.
    """

    def __init__(self, num_players: int, size: int, *, rngs: nnx.Rngs):
        if num_players < 1:
            raise ValueError(f"a style table needs at least one player, got {num_players}")
        self.num_players = int(num_players)
        self.size = int(size)
        self.logits = Routing(_uniform(rngs.params(), (num_players, size), 1e-3, jnp.float32))

    def __call__(self, players: jax.Array) -> jax.Array:
        check_players(players, self.num_players)
        with jax.named_scope("style_lookup"):
            return lookup_rows(self.logits[...], jnp.asarray(players, jnp.int32))


def lookup_rows(table: jax.Array, ids: jax.Array) -> jax.Array:
    """``table[ids]`` (``[P, R]``, ``[batch]`` → ``[batch, R]``), also under an explicit mesh
    (a table sharded by rows, or ids split over the batch): rows come back sharded like ids."""
    table_sharding, id_sharding = jax.typeof(table).sharding, jax.typeof(ids).sharding
    explicit = [sh for sh in (table_sharding, id_sharding) if any(a is not None for a in sh.spec)]
    if not explicit:
        return jnp.take(table, ids, axis=0)
    id_spec = id_sharding.spec
    out = jax.sharding.NamedSharding(
        explicit[0].mesh,
        jax.sharding.PartitionSpec(id_spec[0] if len(id_spec) else None, None),
    )
    return table.at[ids].get(out_sharding=out)


def check_players(players, num_players: int) -> None:
    """Raises ``ValueError`` when concrete ids fall outside ``[0, num_players)``."""
    if isinstance(players, jax.core.Tracer):
        return
    ids = jnp.asarray(players)
    if ids.ndim != 1:
        raise ValueError(f"players must be a [batch] int array, got shape {tuple(ids.shape)}")
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"players must be integer ids, got dtype {ids.dtype}")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= num_players):
        bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
        raise ValueError(
            f"player id {bad} is out of range: the style table has {num_players} players"
        )


def shard_rows(tree, mesh: jax.sharding.Mesh, table_shape: tuple[int, int], axis: str = "data"):
    """Places every leaf of ``tree`` shaped like the style table (``[P, R]``: the table and its
    optimiser moments) sharded by rows over ``mesh[axis]``, everything else replicated.

    Raises:
      ValueError: when ``P`` is not divisible by the axis size.
    """
    size = mesh.shape[axis]
    if table_shape[0] % size:
        raise ValueError(
            f"{table_shape[0]} style-table rows cannot be split evenly over {axis}={size}"
        )
    P = jax.sharding.PartitionSpec
    table_shape = tuple(table_shape)

    def place(leaf):
        if not hasattr(leaf, "shape"):
            return leaf
        spec = P(axis, None) if tuple(leaf.shape) == table_shape else P()
        return jax.device_put(leaf, jax.sharding.NamedSharding(mesh, spec))

    return jax.tree.map(place, tree)
