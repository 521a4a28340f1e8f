"""A Maia-like squeeze-and-excitation residual policy network (Flax NNX).

Input: the project's board planes ``[batch, 18, 8, 8] uint8`` (Maia-2 layout, side to move's
view, :mod:`jaxstyle.chess.encoding`) and the legal-move mask ``[batch, 1880] bool``.

Architecture (lc0 / Maia SE-ResNet, normalisation by LayerNorm over channels instead of
batch norm, so the network is a pure function of parameters and inputs)::

    stem   conv3×3(18 → F) → LN → ReLU
    block  conv3×3 → LN → ReLU → conv3×3 → LN → SE → + skip → ReLU      (× blocks)
    SE     g = mean_{hw}(x);  (w, b) = split(W₂ ReLU(W₁ g));  x·σ(w) + b   (W₁: F → F/ratio)
    policy conv1×1(F → head_channels) → ReLU → flatten → Linear(64·head_channels → 1880)
           ("flat", Maia), or ("from_to") a bilinear square-pair head:
           q = conv1×1(F → d)(x), k = conv1×1(F → d)(x)  per square,  d = head_channels,
           logit(m) = q_{from(m)} · k_{to(m)} / √d + b_m   (b: one bias per vocabulary entry)
    value  conv1×1(F → 1) → ReLU → flatten → Linear(64 → 32) → ReLU → Linear(32 → 1) → tanh

Illegal moves get logit ``-1e9`` (finite, so a softmax never produces NaN).

The ``from_to`` head ties every move's logit to the trunk's features of its two squares
(the board is in the mover's frame, so square ``rank·8 + file`` of the planes is the
vocabulary's square), which a small network learns from far fewer positions than the flat
``64·C × 1880`` layer; it is the default of the experiment configs.
"""

from __future__ import annotations

import dataclasses
import math

import chess
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxstyle.chess.encoding import MOVE_VOCAB, NUM_PLANES, VOCAB_SIZE

ILLEGAL_LOGIT = -1e9
HEADS = ("flat", "from_to")


def _pair_index() -> np.ndarray:
    """``int32 [1880]``: ``from·64 + to`` of every vocabulary move (mover's frame)."""
    moves = [chess.Move.from_uci(uci) for uci in MOVE_VOCAB]
    return np.array([m.from_square * 64 + m.to_square for m in moves], np.int32)


PAIR_INDEX = _pair_index()


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """Size of the network (the default fits a 2-core CPU).

    Attributes:
      blocks: residual blocks (Maia-1: 6).
      filters: channels ``F`` (Maia-1: 64).
      se_ratio: squeeze ratio of the SE layer (Maia-1: 8).
      head_channels: channels of the policy head's 1×1 convolution(s) (``d`` of ``from_to``).
      value_head: also build a value head (``tanh`` score in ``[-1, 1]``).
      head: ``"flat"`` (Maia's flatten + Linear) or ``"from_to"`` (bilinear square pairs).
    """

    blocks: int = 4
    filters: int = 64
    se_ratio: int = 8
    head_channels: int = 16
    value_head: bool = False
    head: str = "flat"

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"PolicyConfig.head must be one of {HEADS}, got {self.head!r}")
        if min(self.blocks, self.filters, self.se_ratio, self.head_channels) < 1:
            raise ValueError(f"PolicyConfig sizes must be positive: {self}")
        if self.filters % self.se_ratio:
            raise ValueError(f"se_ratio={self.se_ratio} must divide filters={self.filters}")


class SqueezeExcite(nnx.Module):
    """``x [batch, 8, 8, F]`` → ``x·σ(w) + b`` with ``(w, b)`` from the channel means."""

    def __init__(self, filters: int, ratio: int, *, rngs: nnx.Rngs):
        self.squeeze = nnx.Linear(filters, filters // ratio, rngs=rngs)
        self.excite = nnx.Linear(filters // ratio, 2 * filters, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        pooled = x.mean(axis=(1, 2))
        scale, bias = jnp.split(self.excite(jax.nn.relu(self.squeeze(pooled))), 2, axis=-1)
        return x * jax.nn.sigmoid(scale)[:, None, None, :] + bias[:, None, None, :]


def _conv(c_in: int, c_out: int, size: int, rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(c_in, c_out, (size, size), padding="SAME", rngs=rngs)


class ResidualBlock(nnx.Module):
    """Two 3×3 convolutions with LayerNorm, SE and a skip connection."""

    def __init__(self, filters: int, se_ratio: int, *, rngs: nnx.Rngs):
        self.conv1 = _conv(filters, filters, 3, rngs)
        self.norm1 = nnx.LayerNorm(filters, rngs=rngs)
        self.conv2 = _conv(filters, filters, 3, rngs)
        self.norm2 = nnx.LayerNorm(filters, rngs=rngs)
        self.se = SqueezeExcite(filters, se_ratio, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.nn.relu(self.norm1(self.conv1(x)))
        y = self.se(self.norm2(self.conv2(y)))
        return jax.nn.relu(x + y)


class PolicyNetwork(nnx.Module):
    """SE-ResNet move policy (see the module docstring).

    Call: ``(planes [batch, 18, 8, 8] uint8, legal_mask [batch, 1880] bool)`` →
    ``(logits [batch, 1880] float32`` masked, ``value [batch] float32`` or ``None)``.
    """

    def __init__(self, config: PolicyConfig, *, rngs: nnx.Rngs):
        f = config.filters
        self.config = config
        self.stem = _conv(NUM_PLANES, f, 3, rngs)
        self.stem_norm = nnx.LayerNorm(f, rngs=rngs)
        self.blocks = nnx.List(
            [ResidualBlock(f, config.se_ratio, rngs=rngs) for _ in range(config.blocks)]
        )
        if config.head == "flat":
            self.policy_conv = _conv(f, config.head_channels, 1, rngs)
            self.policy_out = nnx.Linear(64 * config.head_channels, VOCAB_SIZE, rngs=rngs)
        else:
            self.policy_from = _conv(f, config.head_channels, 1, rngs)
            self.policy_to = _conv(f, config.head_channels, 1, rngs)
            self.policy_bias = nnx.Param(jnp.zeros((VOCAB_SIZE,), jnp.float32))
        if config.value_head:
            self.value_conv = _conv(f, 1, 1, rngs)
            self.value_hidden = nnx.Linear(64, 32, rngs=rngs)
            self.value_out = nnx.Linear(32, 1, rngs=rngs)

    def __call__(
        self, planes: jax.Array, legal_mask: jax.Array
    ) -> tuple[jax.Array, jax.Array | None]:
        check_inputs(planes, legal_mask)
        with jax.named_scope("trunk"):
            x = jnp.transpose(planes.astype(jnp.float32), (0, 2, 3, 1))  # NCHW → NHWC
            x = jax.nn.relu(self.stem_norm(self.stem(x)))
            for block in self.blocks:
                x = block(x)
        with jax.named_scope("policy_head"):
            logits = jnp.where(legal_mask, self.move_logits(x), ILLEGAL_LOGIT)
        value = None
        if self.config.value_head:
            with jax.named_scope("value_head"):
                v = jax.nn.relu(self.value_conv(x)).reshape(x.shape[0], -1)
                value = jnp.tanh(self.value_out(jax.nn.relu(self.value_hidden(v))))[:, 0]
        return logits, value

    def move_logits(self, x: jax.Array) -> jax.Array:
        """Trunk features ``[batch, 8, 8, F]`` → unmasked logits ``[batch, 1880] float32``."""
        if self.config.head == "flat":
            return self.policy_out(jax.nn.relu(self.policy_conv(x)).reshape(x.shape[0], -1))
        d = self.config.head_channels
        q = self.policy_from(x).reshape(x.shape[0], 64, d)
        k = self.policy_to(x).reshape(x.shape[0], 64, d)
        pairs = jnp.einsum("bfd,btd->bft", q, k).reshape(x.shape[0], 64 * 64) / math.sqrt(d)
        return jnp.take(pairs, jnp.asarray(PAIR_INDEX), axis=1) + self.policy_bias[...]


def check_inputs(planes, legal_mask) -> None:
    """Shape checks (static, so they work under ``jit``); one line naming the problem."""
    if planes.ndim != 4 or tuple(planes.shape[1:]) != (NUM_PLANES, 8, 8):
        raise ValueError(f"planes must be [batch, {NUM_PLANES}, 8, 8], got {tuple(planes.shape)}")
    if legal_mask.shape != (planes.shape[0], VOCAB_SIZE):
        raise ValueError(
            f"legal_mask must be [batch={planes.shape[0]}, {VOCAB_SIZE}], "
            f"got {tuple(legal_mask.shape)}"
        )


def block_layers(path: tuple, module: nnx.Module) -> bool:
    """``include`` filter for :func:`jaxstyle.adapters.wrap`: the residual blocks' 3×3 convs."""
    return len(path) >= 3 and path[0] == "blocks" and path[-1] in ("conv1", "conv2")


def head_and_block_layers(path: tuple, module: nnx.Module) -> bool:
    """The residual convs plus the policy head's output layer(s)."""
    return block_layers(path, module) or path in (
        ("policy_out",),
        ("policy_from",),
        ("policy_to",),
    )
