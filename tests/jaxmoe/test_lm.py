"""The MoE language model: causality, RoPE, losses against NumPy, dense baseline, sharding, vmap."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcommon import make_mesh
from jaxmoe.lm import ArmCoefs, LMConfig, MoELM, arm_coefs, lm_loss, rope
from jaxmoe.lm_train import LMTask, OptimConfig

SMALL = dict(d_model=16, num_layers=1, num_heads=2, num_experts=4, top_k=2, d_expert=16)


@nnx.jit
def _logits(model, tokens):
    return model(tokens).logits


def _tokens(batch=4, seq=9, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, (batch, seq)), jnp.int32)


def test_changing_a_future_token_leaves_earlier_logits_unchanged():
    model = MoELM(LMConfig(**SMALL), rngs=nnx.Rngs(0))
    tokens = _tokens()
    changed = tokens.at[:, 5].set((tokens[:, 5] + 1) % 256)
    a, b = _logits(model, tokens), _logits(model, changed)
    np.testing.assert_allclose(a[:, :5], b[:, :5], atol=1e-5)
    assert np.abs(np.asarray(a[:, 5:] - b[:, 5:])).max() > 1e-4


def test_rope_matches_numpy_rotation_of_each_frequency_pair():
    x = np.random.default_rng(1).normal(size=(1, 5, 2, 8)).astype(np.float32)
    theta = 1e4
    ref = np.empty_like(x)
    for t in range(5):
        for i in range(4):
            ang = t * theta ** (-2 * i / 8)
            a, b = x[0, t, :, i], x[0, t, :, i + 4]
            ref[0, t, :, i] = a * np.cos(ang) - b * np.sin(ang)
            ref[0, t, :, i + 4] = b * np.cos(ang) + a * np.sin(ang)
    np.testing.assert_allclose(rope(jnp.asarray(x), theta), ref, atol=1e-5)


def test_lm_loss_is_cross_entropy_plus_output_z_plus_summed_layer_losses():
    cfg = LMConfig(**{**SMALL, "num_layers": 2}, moe_losses=("lbl", "simbal"))
    model = MoELM(cfg, rngs=nnx.Rngs(0))
    batch = _tokens(seq=10)
    coefs = ArmCoefs(lbl=0.01, simbal=0.1, output_z=1e-2)

    @nnx.jit
    def run(model, batch):
        out = model(batch[:, :-1])
        return lm_loss(model, batch, coefs), out.logits, [a.losses["lbl"] for a in out.aux]

    (loss, metrics), logits, lbl = run(model, batch)
    logits = np.asarray(logits, np.float64)
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    targets = np.asarray(batch[:, 1:])
    ce = np.mean(lse - np.take_along_axis(logits, targets[..., None], -1)[..., 0])
    kernels = [np.asarray(m.router_kernel[...], np.float64) for m in model.moe_layers]
    simbal = sum(np.abs(k.T @ k - np.eye(4)).sum() for k in kernels)
    expected = ce + 1e-2 * np.mean(lse**2) + 0.1 * simbal + 0.01 * sum(float(v) for v in lbl)
    assert float(metrics["ce"]) == pytest.approx(ce, rel=1e-5)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert metrics["tokens_per_expert"].shape == (2, 4)


def test_dense_baseline_has_the_active_parameters_of_the_moe_model():
    moe = MoELM(LMConfig(**SMALL), rngs=nnx.Rngs(0))
    dense = MoELM(LMConfig(**SMALL, dense=True), rngs=nnx.Rngs(0))
    ffn = dense.blocks[0].ffn
    assert ffn.w_in[...].shape == (16, 2 * 2 * 16) and ffn.w_out[...].shape == (32, 16)
    per_token_moe = 3 * 16 * 16 * 2  # top_k experts of 3 matrices d × d_expert
    assert ffn.w_in[...].size + ffn.w_out[...].size == per_token_moe
    cfg_m, cfg_d = moe.cfg, dense.cfg
    router = 16 * 4
    assert cfg_m.active_matmul_params() - router == cfg_d.active_matmul_params()
    assert dense(_tokens()).aux == []


def test_untied_embeddings_add_an_output_head_and_moe_every_mixes_dense_layers():
    cfg = LMConfig(**{**SMALL, "num_layers": 2}, tie_embeddings=False, moe_every=2)
    model = MoELM(cfg, rngs=nnx.Rngs(0))
    assert model.head[...].shape == (16, 256)
    assert len(model.moe_layers) == 1 and len(model(_tokens()).aux) == 1


def test_bfloat16_compute_keeps_float32_logits_and_nearly_the_same_loss():
    batch = _tokens(seq=10)
    losses = []
    for dtype in ("float32", "bfloat16"):
        model = MoELM(LMConfig(**SMALL, dtype=dtype), rngs=nnx.Rngs(0))
        loss, metrics = nnx.jit(lm_loss)(model, batch, arm_coefs("simbal"))
        assert metrics["ce"].dtype == jnp.float32
        losses.append(float(loss))
    assert losses[1] == pytest.approx(losses[0], rel=2e-2)


@pytest.mark.parametrize(
    ("bad", "message"),
    [(jnp.zeros((2, 4), jnp.float32), "integers"), (jnp.zeros((2, 0), jnp.int32), "empty")],
)
def test_bad_tokens_raise_one_clear_error(bad, message):
    with pytest.raises(ValueError, match=message):
        MoELM(LMConfig(**SMALL), rngs=nnx.Rngs(0))(bad)


def test_bad_config_and_unknown_arm_are_rejected():
    with pytest.raises(ValueError, match="heads"):
        LMConfig(d_model=10, num_heads=4)
    with pytest.raises(ValueError, match="unknown arm"):
        arm_coefs("simbal2")


def test_training_on_a_data_by_expert_mesh_matches_one_device_and_loss_free_bias_moves():
    cfg = LMConfig(**SMALL, moe_losses=("lbl",), loss_free_bias=True)
    optim = OptimConfig(num_steps=4, warmup_steps=1)
    batch = _tokens(batch=8, seq=9)
    coefs = arm_coefs("loss_free")
    results = []
    for mesh in (None, make_mesh({"data": 2, "expert": 4}, axis_types="auto")):
        task = LMTask(cfg, optim, mesh=mesh)
        state = task.init(0)
        x = (
            batch
            if mesh is None
            else jax.device_put(batch, NamedSharding(mesh, P(("data", "expert"))))
        )
        step = jax.jit(task.train_step)
        losses = []
        for _ in range(2):
            state, metrics = step(state, x, coefs)
            losses.append(metrics["loss"])
        results.append((np.asarray(losses), task.model(state), metrics))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    (_, model, metrics) = results[0]
    bias = np.asarray(model.moe_layers[0].router_bias[...])
    assert np.all(np.abs(bias) <= 2e-3 + 1e-9) and np.any(bias != 0)


def test_vmapped_arms_train_like_separate_runs():
    cfg = LMConfig(**SMALL, moe_losses=("lbl", "simbal"))
    task = LMTask(cfg, OptimConfig(num_steps=4, warmup_steps=1))
    batch = _tokens(batch=4, seq=9)
    arms = ("lbl", "simbal")
    coefs = jax.tree.map(lambda *a: jnp.stack(a), *[arm_coefs(a) for a in arms])
    states, metrics = jax.jit(jax.vmap(task.train_step, in_axes=(0, None, 0)))(
        task.init_many([0, 1]), batch, coefs
    )
    step = jax.jit(task.train_step)
    for i, (seed, arm) in enumerate(zip((0, 1), arms, strict=True)):
        one, m = step(task.init(seed), batch, arm_coefs(arm))
        assert float(metrics["loss"][i]) == pytest.approx(float(m["loss"]), rel=1e-5)
        chex.assert_trees_all_close(jax.tree.map(lambda a, i=i: a[i], states), one, atol=1e-5)
