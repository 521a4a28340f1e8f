"""Bad input fails with one clear ValueError when the layer is built (or traced)."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxmoe import MoEConfig, MoELayer

BASE = dict(d_model=16, num_experts=8, top_k=2, d_expert=8)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"top_k": 9}, "top_k=9 exceeds num_experts=8"),
        ({"gating": "relu"}, "unknown gating 'relu'"),
        ({"losses": ("simbal", "aux")}, "unknown loss 'aux'"),
        ({"losses": {"lbl": -1.0}}, "must be >= 0"),
        ({"routing": "hash"}, "unknown routing 'hash'"),
        ({"dispatch": "ragged"}, "unknown dispatch 'ragged'"),
        ({"d_expert": 0}, "d_expert must be a positive int"),
        ({"capacity_factor": 0.0}, "capacity_factor must be > 0"),
        ({"tile_size": 12}, "tile_size must be a positive multiple of 8"),
        ({"prune_threshold": 1.5}, "prune_threshold must be in"),
    ],
)
def test_bad_config_raises_one_clear_error(change, message):
    with pytest.raises(ValueError, match=message):
        MoEConfig(**{**BASE, **change})


def test_experts_not_divisible_by_expert_axis_raise_at_construction():
    mesh = jax.make_mesh((8,), ("expert",))
    cfg = MoEConfig(**{**BASE, "num_experts": 12, "top_k": 2})
    with pytest.raises(ValueError, match="num_experts=12 is not divisible by the size 8"):
        MoELayer(cfg, rngs=nnx.Rngs(0), mesh=mesh)


def test_mismatched_input_width_raises_before_xla():
    layer = MoELayer(MoEConfig(**BASE), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"expected x of shape \[batch, seq, 16\]"):
        layer(jnp.zeros((2, 4, 12)))


def test_batch_not_divisible_by_mesh_raises_before_xla():
    mesh = jax.make_mesh((2, 4), ("data", "expert"))
    layer = MoELayer(MoEConfig(**BASE), rngs=nnx.Rngs(0), mesh=mesh)
    with pytest.raises(ValueError, match="batch size 4 is not divisible by the 8 devices"):
        layer(jnp.zeros((4, 4, 16)))


def test_loss_names_accept_aliases_and_default_coefficients():
    cfg = MoEConfig(**BASE, losses=["load_balancing", "router_z", "simbal"])
    assert cfg.loss_coefs == {"lbl": 0.01, "z_loss": 1e-3, "simbal": 0.1}
    assert MoEConfig(**BASE, losses=None).loss_coefs == {}


@pytest.mark.parametrize("field", ["dtype", "param_dtype"])
def test_integer_dtypes_are_rejected_when_the_config_is_built(field):
    with pytest.raises(ValueError, match=f"{field} must be a floating dtype"):
        MoEConfig(**BASE, **{field: jnp.int32})


def test_unknown_grouped_matmul_backend_raises():
    with pytest.raises(ValueError, match="unknown grouped_matmul 'cublas'"):
        MoEConfig(**BASE, grouped_matmul="cublas")


def test_integer_input_is_rejected_at_call_time():
    layer = MoELayer(MoEConfig(**BASE), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="x must be a floating array .* got int32"):
        layer(jnp.ones((2, 4, 16), jnp.int32))


@pytest.mark.parametrize("shape", [(2, 0, 16), (0, 16)], ids=["empty-sequence", "no-tokens"])
def test_empty_input_raises_one_clear_error(shape):
    layer = MoELayer(MoEConfig(**BASE), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="empty input: x has shape"):
        layer(jnp.zeros(shape))


@pytest.mark.parametrize("threshold", [1.0, -0.1, "high"])
def test_call_time_prune_threshold_is_range_checked(threshold):
    layer = MoELayer(MoEConfig(**BASE), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="prune_threshold must be"):
        layer(jnp.zeros((2, 4, 16)), prune_threshold=threshold)
