"""A small decoder-only language model built from ``MoELayer`` (the SimBal paper's setting).

Pre-norm blocks ``x += attn(rmsnorm(x)); x += ffn(rmsnorm(x))`` with RoPE, causal
multi-head attention and a SwiGLU feed-forward that is a ``MoELayer`` in every
``moe_every``-th layer (the paper: every layer) and a dense SwiGLU elsewhere. The dense
baseline (``dense=True``) uses ``d_ff = top_k · d_expert``, so it has the same *active*
parameters per token as the MoE model. Compute runs in ``dtype`` (float32 or bfloat16);
the router, the logits and every loss are float32.

Losses (per token, natural log)::

    L = CE + c_z · mean_t (log Σ_v exp ℓ_tv)²                 (output-logit z-loss, 1e-5)
          + Σ_layers [c_lbl · LBL + c_simbal · ||RᵀR − I||₁ + c_rz · router-z]

The coefficients are an ``ArmCoefs`` of scalars passed at call time (they may be traced,
so arms with equal shapes can be ``vmap``-ed in one program); the layers only compute the
unweighted losses named in ``LMConfig.moe_losses``. Layer losses are **summed** over
layers (the literal reading of the paper; see ``jaxmoe.losses``).

Sharding: with a mesh the batch is split over the data axes and the expert axis
(``MoEConfig.data_axes`` + ``expert_axis``), activations carry sharding constraints, the
attention/FFN weights name ``model`` for tensor parallelism and the experts live on the
``expert`` axis. Any ``jaxcommon.make_mesh`` mesh works; the model uses it with
``AxisType.Auto`` (sharding by constraints, GSPMD propagation).
Example::

    cfg = LMConfig(d_model=64, num_layers=2, num_heads=4, num_experts=8, top_k=2, d_expert=64)
    model = MoELM(cfg, rngs=nnx.Rngs(0))
    out = model(tokens)                    # tokens [B, S] int32 → out.logits [B, S, 256]
    loss, metrics = lm_loss(model, batch, arm_coefs("simbal"))   # batch [B, S + 1]
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmoe.apply import batch_axes
from jaxmoe.config import MoEConfig
from jaxmoe.experts import swiglu
from jaxmoe.layer import MoELayer

_F32 = jnp.float32
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

#: The comparison's arms: auxiliary-loss coefficients and the loss-free bias rate.
#: LBL 0.01 (OLMoE / the paper's baseline), SimBal 0.1, loss-free u = 1e-3 (arXiv:2408.15664).
ARMS = {
    "none": {},
    "lbl": {"lbl": 0.01},
    "simbal": {"simbal": 0.1},
    "loss_free": {"bias_rate": 1e-3},
    "loss_free+simbal": {"simbal": 0.1, "bias_rate": 1e-3},
}


class ArmCoefs(NamedTuple):
    """Loss coefficients of one arm (float32 scalars, or ``[n]`` arrays under ``vmap``).

    Attributes:
      lbl: load-balancing loss weight (per layer, summed over layers).
      simbal: SimBal ``||RᵀR − I||₁`` weight.
      router_z: router z-loss weight (0 in the paper).
      output_z: output-logit z-loss weight (the paper's 1e-5 "as in OLMo 2", every arm).
      bias_rate: loss-free balancing rate u (0 = no bias update).
    """

    lbl: Any = 0.0
    simbal: Any = 0.0
    router_z: Any = 0.0
    output_z: Any = 1e-5
    bias_rate: Any = 0.0


def arm_coefs(arm: str, *, z_loss: float = 1e-5) -> ArmCoefs:
    """``ArmCoefs`` of a named arm (``ARMS``) with output z-loss ``z_loss`` (0 = off)."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose one of {sorted(ARMS)}")
    values = {**ArmCoefs()._asdict(), "output_z": z_loss, **ARMS[arm]}
    return ArmCoefs(**{k: jnp.asarray(v, _F32) for k, v in values.items()})


def losses_for(arms) -> tuple[tuple[str, ...], bool]:
    """``(moe_losses, loss_free_bias)`` an ``LMConfig`` needs to train all ``arms``."""
    names = sorted({n for a in arms for n in ARMS[a] if n in ("lbl", "simbal")})
    return tuple(names), any("bias_rate" in ARMS[a] for a in arms)


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Static shape of the language model.

    Attributes:
      vocab_size: 256 for the byte tokenizer.
      d_model, num_layers, num_heads: transformer size (``d_model % num_heads == 0``).
      num_experts, top_k, d_expert: every MoE layer's experts.
      moe_every: layer i (0-based) is MoE when ``(i + 1) % moe_every == 0``.
      dense: dense baseline: every FFN a SwiGLU of width ``d_ff``.
      d_ff: dense FFN width; None = ``top_k · d_expert`` (equal active parameters).
      moe_losses: unweighted layer losses to compute (``"lbl"``, ``"simbal"``, ``"z_loss"``).
      loss_free_bias: give every MoE layer a loss-free selection bias.
      gating, dispatch, capacity_factor: passed to ``MoEConfig``.
      tie_embeddings: output head = embedding matrix (else a separate ``[d, V]`` kernel).
      rope_theta: RoPE base (paper: 1e4 for MoE-M).
      dtype: ``"float32"`` or ``"bfloat16"`` compute (router, logits, losses float32).
    """

    vocab_size: int = 256
    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_experts: int = 8
    top_k: int = 2
    d_expert: int = 128
    moe_every: int = 1
    dense: bool = False
    d_ff: int | None = None
    moe_losses: tuple[str, ...] = ("simbal",)
    loss_free_bias: bool = False
    gating: str = "softmax"
    dispatch: str = "dropless"
    capacity_factor: float = 1.25
    tie_embeddings: bool = True
    rope_theta: float = 1e4
    dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "moe_losses", tuple(self.moe_losses))
        for name in ("vocab_size", "d_model", "num_layers", "num_heads", "moe_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.d_model % self.num_heads or (self.d_model // self.num_heads) % 2:
            raise ValueError(
                f"d_model={self.d_model} must split into {self.num_heads} heads of even width"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if not self.dense:
            self.moe_config()  # validates the expert settings once

    @property
    def ffn_width(self) -> int:
        """Dense SwiGLU width: ``d_ff`` or ``top_k · d_expert``."""
        return self.d_ff or self.top_k * self.d_expert

    def is_moe(self, layer: int) -> bool:
        return not self.dense and (layer + 1) % self.moe_every == 0

    def moe_config(self) -> MoEConfig:
        return MoEConfig(
            d_model=self.d_model,
            num_experts=self.num_experts,
            top_k=self.top_k,
            d_expert=self.d_expert,
            gating=self.gating,
            dispatch=self.dispatch,
            capacity_factor=self.capacity_factor,
            losses=self.moe_losses,
            loss_free_bias=self.loss_free_bias,
            dtype=DTYPES[self.dtype],
        )

    def active_matmul_params(self) -> int:
        """Matmul weights one token passes through (embedding lookup excluded, head included)."""
        d = self.d_model
        per_layer = 4 * d * d
        total = self.vocab_size * d
        for i in range(self.num_layers):
            ffn = d * self.num_experts + 3 * d * self.top_k * self.d_expert
            total += per_layer + (ffn if self.is_moe(i) else 3 * d * self.ffn_width)
        return total

    def train_flops_per_token(self, seq_len: int) -> float:
        """Model FLOPs per trained token: ``6·N_active + 12·L·d·S`` (PaLM's count)."""
        return 6.0 * self.active_matmul_params() + 12.0 * self.num_layers * self.d_model * seq_len


def auto_mesh(mesh: Mesh | None) -> Mesh | None:
    """The same devices and axes with ``AxisType.Auto`` (sharding by constraints)."""
    if mesh is None or all(t == AxisType.Auto for t in mesh.axis_types):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))


def _constrain(x: jax.Array, mesh: Mesh | None, *spec) -> jax.Array:
    if mesh is None:
        return x
    spec = tuple(
        s if s is None or all(a in mesh.axis_names for a in _names(s)) else None for s in spec
    )
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(*spec)))


def _names(s) -> tuple[str, ...]:
    return (s,) if isinstance(s, str) else tuple(s)


class RMSNorm(nnx.Module):
    """``x / sqrt(mean(x²) + ε) · scale`` in float32; ``[..., d] → [..., d]`` (input dtype)."""

    def __init__(self, d: int, eps: float = 1e-6):
        self.scale = _param(jnp.ones((d,), _F32), out_sharding=(None,))
        self.eps = eps

    def __call__(self, x):
        xf = x.astype(_F32)
        y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return (y * self.scale[...]).astype(x.dtype)


def rope(x: jax.Array, theta: float) -> jax.Array:
    """Rotary position embedding of ``x [B, S, H, Dh]`` (rotate-half form, float32 math)."""
    seq, dh = x.shape[1], x.shape[-1]
    freq = theta ** (-jnp.arange(0, dh // 2, dtype=_F32) * 2.0 / dh)  # [Dh/2]
    angle = jnp.arange(seq, dtype=_F32)[:, None] * freq[None, :]  # [S, Dh/2]
    cos, sin = jnp.cos(angle)[None, :, None, :], jnp.sin(angle)[None, :, None, :]
    x1, x2 = jnp.split(x.astype(_F32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def _param(value: jax.Array, out_sharding: tuple) -> nnx.Param:
    """A parameter carrying its partitioning names as metadata (placed later by ``place``)."""
    return nnx.Param(value, out_sharding=out_sharding, eager_sharding=False)


def _init(key, shape, fan_in):
    return jax.random.truncated_normal(key, -2.0, 2.0, shape, _F32) * (fan_in**-0.5)


class Attention(nnx.Module):
    """Causal multi-head self-attention with RoPE: ``[B, S, d] → [B, S, d]``.

    Weights ``wqkv [d, 3, H, Dh]`` and ``wo [H, Dh, d]`` (heads named ``model``).
    """

    def __init__(self, cfg: LMConfig, *, rngs: nnx.Rngs):
        d, h = cfg.d_model, cfg.num_heads
        self.cfg = cfg
        self.wqkv = _param(
            _init(rngs.params(), (d, 3, h, d // h), d), out_sharding=(None, None, "model", None)
        )
        self.wo = _param(
            _init(rngs.params(), (h, d // h, d), d) / (2 * cfg.num_layers) ** 0.5,
            out_sharding=("model", None, None),
        )

    def __call__(self, x, mesh=None, bax=()):
        dt = x.dtype
        qkv = jnp.einsum("bsd,dthk->tbshk", x, self.wqkv[...].astype(dt))
        q, k, v = (
            _constrain(rope(t, self.cfg.rope_theta) if i < 2 else t, mesh, bax, None, "model", None)
            for i, t in enumerate(qkv)
        )
        o = jax.nn.dot_product_attention(q, k, v, is_causal=True)
        return jnp.einsum("bshk,hkd->bsd", o, self.wo[...].astype(dt))


class DenseFFN(nnx.Module):
    """SwiGLU ``[B, S, d] → [B, S, d]`` with fused ``w_in [d, 2f]`` and ``w_out [f, d]``."""

    def __init__(self, cfg: LMConfig, *, rngs: nnx.Rngs):
        d, f = cfg.d_model, cfg.ffn_width
        self.w_in = _param(_init(rngs.params(), (d, 2 * f), d), out_sharding=(None, "model"))
        self.w_out = _param(
            _init(rngs.params(), (f, d), f) / (2 * cfg.num_layers) ** 0.5,
            out_sharding=("model", None),
        )

    def __call__(self, x):
        return swiglu(x, self.w_in[...].astype(x.dtype), self.w_out[...].astype(x.dtype))


class Block(nnx.Module):
    """Pre-norm transformer block; its FFN is a ``MoELayer`` or a ``DenseFFN``."""

    def __init__(self, cfg: LMConfig, layer: int, *, rngs: nnx.Rngs, mesh: Mesh | None):
        self.attn_norm = RMSNorm(cfg.d_model)
        self.attn = Attention(cfg, rngs=rngs)
        self.ffn_norm = RMSNorm(cfg.d_model)
        if cfg.is_moe(layer):
            self.ffn = MoELayer(cfg.moe_config(), rngs=rngs, mesh=mesh)
        else:
            self.ffn = DenseFFN(cfg, rngs=rngs)


class LMOutput(NamedTuple):
    """``logits [B, S, V] float32``; ``aux``: one ``MoEAux`` per MoE layer; ``hidden``: the
    FFN inputs ``[B, S, d]`` of the MoE layers (only with ``return_hidden``)."""

    logits: jax.Array
    aux: list
    hidden: list


class MoELM(nnx.Module):
    """Decoder-only byte LM with MoE feed-forward layers.

    Args:
      cfg: ``LMConfig``.
      rngs: NNX RNG streams (``params``).
      mesh: optional mesh (data × expert [× model]); converted to ``AxisType.Auto``.
    """

    def __init__(self, cfg: LMConfig, *, rngs: nnx.Rngs, mesh: Mesh | None = None):
        if not isinstance(cfg, LMConfig):
            raise ValueError(f"cfg must be an LMConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.mesh = auto_mesh(mesh)
        d = cfg.d_model
        # std d^-1/2: tied logits start at unit scale (loss ≈ ln V).
        self.embed = _param(_init(rngs.params(), (cfg.vocab_size, d), d), (None, None))
        self.blocks = nnx.List(
            [Block(cfg, i, rngs=rngs, mesh=self.mesh) for i in range(cfg.num_layers)]
        )
        self.final_norm = RMSNorm(d)
        self.head = (
            None
            if cfg.tie_embeddings
            else _param(_init(rngs.params(), (d, cfg.vocab_size), d), out_sharding=(None, None))
        )
        if self.mesh is not None:
            place(self, self.mesh)

    @property
    def moe_layers(self) -> list[MoELayer]:
        return [b.ffn for b in self.blocks if isinstance(b.ffn, MoELayer)]

    def __call__(
        self,
        tokens: jax.Array,
        *,
        prune_threshold: float | None = None,
        return_hidden: bool = False,
    ) -> LMOutput:
        """``tokens [B, S]`` int → ``LMOutput`` (logits ``[B, S, V] float32``)."""
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(
                f"tokens must be [batch, seq] integers, got {tokens.dtype}{tokens.shape}"
            )
        if tokens.shape[1] == 0:
            raise ValueError("tokens has an empty sequence axis")
        cfg, mesh = self.cfg, self.mesh
        bax = batch_axes(mesh) or None
        dt = DTYPES[cfg.dtype]
        emb = self.embed[...]
        x = _constrain(jnp.take(emb, tokens, axis=0).astype(dt), mesh, bax, None, None)
        aux, hidden = [], []
        for block in self.blocks:
            with jax.named_scope("attention"):
                x = x + block.attn(block.attn_norm(x), mesh, bax)
            x = _constrain(x, mesh, bax, None, None)
            h = block.ffn_norm(x)
            with jax.named_scope("ffn"):
                if isinstance(block.ffn, MoELayer):
                    y, a = block.ffn(h, prune_threshold=prune_threshold)
                    aux.append(a)
                    if return_hidden:
                        hidden.append(h)
                else:
                    y = block.ffn(h)
            x = _constrain(x + y, mesh, bax, None, None)
        x = self.final_norm(x)
        w = emb.T if self.head is None else self.head[...]
        with jax.named_scope("logits"):
            logits = jnp.einsum("bsd,dv->bsv", x, w.astype(dt), preferred_element_type=_F32)
        return LMOutput(_constrain(logits, mesh, bax, None, None), aux, hidden)


def place(model: nnx.Module, mesh: Mesh) -> None:
    """Puts every variable on ``mesh`` by its ``out_sharding`` names (missing axes replicated)."""
    for _, var in nnx.iter_graph(model):
        if not isinstance(var, nnx.Variable):
            continue
        value, names = var[...], getattr(var, "out_sharding", None)
        if names is None:  # e.g. optimiser moments: keep a placement on this mesh
            current = getattr(value, "sharding", None)
            if (
                isinstance(current, NamedSharding)
                and current.mesh.devices.shape == mesh.devices.shape
            ):
                var[...] = jax.device_put(value, NamedSharding(mesh, current.spec))
                continue
            names = (None,) * jnp.ndim(value)
        spec = P(*(n if n in mesh.axis_names else None for n in names))
        var[...] = jax.device_put(value, NamedSharding(mesh, spec))


LAYER_METRICS = (
    "max_vio",
    "seu",
    "unique_experts",
    "routing_entropy",
    "orthogonality_mse",
    "pruned_fraction",
)


def lm_loss(
    model: MoELM, batch: jax.Array, coefs: ArmCoefs, *, prune_threshold: float | None = None
) -> tuple[jax.Array, dict[str, Any]]:
    """Next-byte loss of ``batch [B, S + 1]`` int32 (inputs ``[:, :-1]``, targets ``[:, 1:]``).

    .. math::
       L = \\frac{1}{BS}\\sum_{b,t} \\big(\\mathrm{lse}(ℓ_{bt}) − ℓ_{bt,y_{bt}}\\big)
           + c_z\\,\\overline{\\mathrm{lse}^2} + \\sum_{\\text{layers}} c·L_{\\text{aux}}

    Returns:
      ``(loss, metrics)``: float32 scalars ``loss``, ``ce``, ``z_loss``, ``moe_loss`` and the
      mean over MoE layers of each ``LAYER_METRICS`` entry, plus ``tokens_per_expert``
      ``[n_moe_layers, E]`` (for the loss-free update and load plots; not a log scalar).
    """
    inputs, targets = batch[:, :-1], batch[:, 1:]
    out = model(inputs, prune_threshold=prune_threshold)
    lse = jax.nn.logsumexp(out.logits, axis=-1)
    picked = jnp.take_along_axis(out.logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    ce = jnp.mean(lse - picked)
    z = jnp.mean(jnp.square(lse))
    moe = jnp.zeros((), _F32)
    weights = {"lbl": coefs.lbl, "simbal": coefs.simbal, "z_loss": coefs.router_z}
    for a in out.aux:
        for name, value in a.losses.items():
            moe = moe + weights[name] * value
    loss = ce + coefs.output_z * z + moe
    metrics = {"loss": loss, "ce": ce, "z_loss": z, "moe_loss": moe}
    if out.aux:
        for name in LAYER_METRICS:
            metrics[name] = jnp.mean(jnp.stack([a.metrics[name] for a in out.aux]))
        metrics["tokens_per_expert"] = jnp.stack([a.metrics["tokens_per_expert"] for a in out.aux])
    return loss, metrics
