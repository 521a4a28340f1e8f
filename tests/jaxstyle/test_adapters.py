"""MHR / Polytropon skill adapters: the mixing math against NumPy, generic wrapping, a toy."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxstyle import adapters
from jaxstyle.adapters import Routing, Skill, SkillConfig


def np_mixing(z: np.ndarray, heads: int, skills: int) -> np.ndarray:
    """``[b, R]`` logits → ``[b, L, h, s]`` normalised sigmoid (the Poly/MHR rule)."""
    gates = 1.0 / (1.0 + np.exp(-z))
    gates = gates.reshape(z.shape[0], -1, heads, skills)
    return gates / (gates.sum(-1, keepdims=True) + 1e-12)


def np_row_adapter(a: np.ndarray, b: np.ndarray, alpha: np.ndarray):
    """One row's materialised adapter, as PEFT builds it: A_τ [d_in, r], B_τ [r, d_out]."""
    mixed_a = np.einsum("hs,hsdr->hdr", alpha, a)  # per head
    mixed_b = np.einsum("hs,hsrd->hrd", alpha, b)
    h, d_head, r = mixed_a.shape
    full_a = mixed_a.reshape(h * d_head, r)  # head blocks stacked along the input
    full_b = mixed_b.transpose(1, 0, 2).reshape(r, -1)  # concatenated along the output
    return full_a, full_b


def _randomise_skills(module: nnx.Module, seed: int) -> None:
    """Non-zero B (and fresh A) so adapters change the output."""
    rng = np.random.default_rng(seed)
    for _, leaf in nnx.iter_graph(module):
        if isinstance(leaf, Skill):
            leaf[...] = jnp.asarray(rng.normal(0, 0.5, leaf.shape), jnp.float32)


class TwoLinear(nnx.Module):
    def __init__(self, rngs):
        self.first = nnx.Linear(8, 12, rngs=rngs)
        self.second = nnx.Linear(12, 4, rngs=rngs)

    def __call__(self, x):
        return self.second(jax.nn.relu(self.first(x)))


def test_mixing_weights_are_the_normalised_sigmoid_of_each_head():
    config = SkillConfig(num_skills=3, num_heads=2, rank=2)
    z = np.random.default_rng(0).normal(0, 2, (5, 6)).astype(np.float32)
    got = adapters.mixing_weights(jnp.asarray(z), config, num_layers=4)
    np.testing.assert_allclose(got, np_mixing(z, 2, 3), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got).sum(-1), 1.0, rtol=1e-6)


def test_linear_adapter_in_skill_space_equals_numpy_per_row_materialised_adapter():
    config = SkillConfig(num_skills=3, num_heads=2, rank=4, alpha=2.0)
    layer = adapters.MHRLinear(
        nnx.Linear(6, 10, rngs=nnx.Rngs(0)), config, layer_index=0, rngs=nnx.Rngs(1)
    )
    _randomise_skills(layer, 2)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(7, 6)).astype(np.float32)
    z = rng.normal(0, 2, (7, config.block_size)).astype(np.float32)
    alpha = np_mixing(z, 2, 3)[:, 0]
    with adapters.mixing(adapters.mixing_weights(jnp.asarray(z), config, 1)):
        got = layer(jnp.asarray(x))
    kernel, bias = np.asarray(layer.base.kernel[...]), np.asarray(layer.base.bias[...])
    a, b = np.asarray(layer.a[...]), np.asarray(layer.b[...])
    want = np.stack(
        [
            x[i] @ kernel + bias + (2.0 / 4) * (x[i] @ fa) @ fb
            for i, (fa, fb) in enumerate(np_row_adapter(a, b, alpha[i]) for i in range(7))
        ]
    )
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def np_conv_same(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``x [H, W, C]`` * ``kernel [k, k, C, O]`` with SAME zero padding, stride 1."""
    k = kernel.shape[0]
    pad = k // 2
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    out = np.zeros((x.shape[0], x.shape[1], kernel.shape[-1]))
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = np.einsum("abc,abco->o", xp[i : i + k, j : j + k], kernel)
    return out


def test_conv_adapter_equals_numpy_locon_with_per_row_mixed_kernels():
    config = SkillConfig(num_skills=2, num_heads=2, rank=3)
    layer = adapters.MHRConv(
        nnx.Conv(4, 6, (3, 3), padding="SAME", rngs=nnx.Rngs(0)),
        config,
        layer_index=0,
        rngs=nnx.Rngs(1),
    )
    _randomise_skills(layer, 4)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 5, 5, 4)).astype(np.float32)
    z = rng.normal(0, 2, (3, config.block_size)).astype(np.float32)
    alpha = np_mixing(z, 2, 2)[:, 0]
    with adapters.mixing(adapters.mixing_weights(jnp.asarray(z), config, 1)):
        got = np.asarray(layer(jnp.asarray(x)))
    kernel, bias = np.asarray(layer.base.kernel[...]), np.asarray(layer.base.bias[...])
    a, b = np.asarray(layer.a[...]), np.asarray(layer.b[...])  # [h,s,3,3,c/h,r], [h,s,r,o/h]
    for row in range(3):
        mixed_a = np.einsum("hs,hsxycr->hxycr", alpha[row], a)
        full_a = np.concatenate(list(mixed_a), axis=2)  # [3, 3, C_in, r]: heads along input
        mixed_b = np.einsum("hs,hsro->hro", alpha[row], b)
        full_b = np.concatenate(list(mixed_b), axis=1)  # [r, C_out]
        want = np_conv_same(x[row], kernel) + bias
        want += (1.0 / 3) * np_conv_same(x[row], full_a) @ full_b
        np.testing.assert_allclose(got[row], want, rtol=1e-4, atol=1e-4)


def test_zero_initialised_B_gives_exactly_the_base_output():
    config = SkillConfig(num_skills=4, num_heads=2, rank=2)
    model, layers = adapters.wrap(TwoLinear(nnx.Rngs(0)), config, rngs=nnx.Rngs(1))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 8)), jnp.float32)
    z = jnp.asarray(np.random.default_rng(1).normal(0, 3, (5, config.block_size)), jnp.float32)
    with adapters.mixing(None):
        base = model(x)
    with adapters.mixing(adapters.mixing_weights(z, config, layers)):
        mixed = model(x)
    chex.assert_trees_all_close(mixed, base, atol=0, rtol=0)
    plain = TwoLinear(nnx.Rngs(0))
    chex.assert_trees_all_close(base, plain(x), atol=1e-6)


def test_wrap_replaces_linear_and_conv_layers_and_counts_them():
    model, layers = adapters.wrap(
        TwoLinear(nnx.Rngs(0)), SkillConfig(num_heads=2), rngs=nnx.Rngs(1)
    )
    assert layers == 2
    assert isinstance(model.first, adapters.MHRLinear) and model.second.layer_index == 1
    assert adapters.routing_size(SkillConfig(num_heads=2, shared_routing=False), layers) == 32


def test_per_layer_routing_gives_each_layer_its_own_block_of_the_style_vector():
    config = SkillConfig(num_skills=2, num_heads=2, rank=2, shared_routing=False)
    model, layers = adapters.wrap(TwoLinear(nnx.Rngs(0)), config, rngs=nnx.Rngs(1))
    _randomise_skills(model.second, 0)  # only the second layer's adapter is active
    x = jnp.ones((1, 8))
    z = jnp.zeros((1, adapters.routing_size(config, layers)))

    def run(z):
        with adapters.mixing(adapters.mixing_weights(z, config, layers)):
            return model(x)

    first_block, second_block = z.at[0, :4].set(5.0), z.at[0, 4:].set(jnp.array([5.0, -5, 0, 1]))
    chex.assert_trees_all_close(run(first_block), run(z), atol=1e-6)
    assert float(jnp.abs(run(second_block) - run(z)).max()) > 1e-3


def test_wrapped_layer_without_mixing_context_and_bad_layouts_raise():
    model, _ = adapters.wrap(TwoLinear(nnx.Rngs(0)), SkillConfig(num_heads=2), rngs=nnx.Rngs(1))
    with pytest.raises(RuntimeError, match="outside"):
        model(jnp.ones((1, 8)))
    with pytest.raises(ValueError, match="must divide"):
        adapters.wrap(TwoLinear(nnx.Rngs(0)), SkillConfig(num_heads=3), rngs=nnx.Rngs(1))
    with pytest.raises(ValueError, match=r"style vectors must be \[batch, 8\]"):
        adapters.mixing_weights(jnp.zeros((2, 5)), SkillConfig(num_skills=4, num_heads=2), 2)
    table = adapters.StyleTable(4, 8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="player id 4 is out of range"):
        table(jnp.array([0, 4]))


# --- a small transformer, wrapped generically, trained on a multi-task toy --------------

VOCAB, SEQ, TASKS = 8, 6, 4


class TinyTransformer(nnx.Module):
    """One pre-LN attention block + MLP; every projection is an nnx.Linear."""

    def __init__(self, d: int, rngs: nnx.Rngs):
        self.embed = nnx.Embed(VOCAB, d, rngs=rngs)
        self.pos = nnx.Param(jax.random.normal(rngs.params(), (SEQ, d)) * 0.1)
        self.norm1, self.norm2 = nnx.LayerNorm(d, rngs=rngs), nnx.LayerNorm(d, rngs=rngs)
        self.q, self.k = nnx.Linear(d, d, rngs=rngs), nnx.Linear(d, d, rngs=rngs)
        self.v, self.o = nnx.Linear(d, d, rngs=rngs), nnx.Linear(d, d, rngs=rngs)
        self.up, self.down = nnx.Linear(d, 2 * d, rngs=rngs), nnx.Linear(2 * d, d, rngs=rngs)
        self.head = nnx.Linear(d, VOCAB, rngs=rngs)

    def __call__(self, tokens):  # [batch, seq] int32 → [batch, seq, vocab]
        x = self.embed(tokens) + self.pos[...]
        h = self.norm1(x)
        att = jnp.einsum("bid,bjd->bij", self.q(h), self.k(h)) / jnp.sqrt(h.shape[-1])
        x = x + self.o(jax.nn.softmax(att, -1) @ self.v(h))
        x = x + self.down(jax.nn.relu(self.up(self.norm2(x))))
        return self.head(x)


def toy_batch(key, size: int):
    """Task t: every output token is (input token + t) mod VOCAB."""
    k1, k2 = jax.random.split(key)
    tasks = jax.random.randint(k1, (size,), 0, TASKS)
    tokens = jax.random.randint(k2, (size, SEQ), 0, VOCAB)
    return tasks, tokens, (tokens + tasks[:, None]) % VOCAB


def test_generic_wrapping_of_a_transformer_learns_a_multi_task_toy_with_frozen_base():
    config = SkillConfig(num_skills=4, num_heads=2, rank=4)
    model, layers = adapters.wrap(TinyTransformer(16, nnx.Rngs(0)), config, rngs=nnx.Rngs(1))
    assert layers == 7
    table = adapters.StyleTable(TASKS, adapters.routing_size(config, layers), rngs=nnx.Rngs(2))
    graphdef, skills, base = nnx.split(model, Skill, nnx.Param)
    params = {"skills": skills, "routing": nnx.state(table, Routing)}
    tx = optax.multi_transform(
        {"skills": optax.adam(1e-2), "routing": optax.adam(2e-2)},
        {"skills": "skills", "routing": "routing"},
    )

    def logits_of(params, tasks, tokens, use_adapters=True):
        net = nnx.merge(graphdef, params["skills"], base)
        z = params["routing"]["logits"][...][tasks]
        weights = adapters.mixing_weights(z, config, layers) if use_adapters else None
        with adapters.mixing(weights):
            return net(tokens)

    def loss_fn(params, tasks, tokens, targets):
        logits = logits_of(params, tasks, tokens)
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    @jax.jit
    def step(params, opt, key):
        grads = jax.grad(loss_fn)(params, *toy_batch(key, 64))
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt

    opt = tx.init(params)
    for i in range(200):
        params, opt = step(params, opt, jax.random.key(i))

    tasks, tokens, targets = toy_batch(jax.random.key(10_000), 512)
    accuracy = lambda logits: float((logits.argmax(-1) == targets).mean())  # noqa: E731
    own = accuracy(logits_of(params, tasks, tokens))
    wrong = accuracy(logits_of(params, (tasks + 1) % TASKS, tokens))
    base_only = accuracy(logits_of(params, tasks, tokens, use_adapters=False))
    assert own > 0.9, own
    assert wrong < 0.3 and base_only < 0.3, (wrong, base_only)
    chex.assert_trees_all_equal(base, nnx.split(model, Skill, nnx.Param)[2])  # base untouched
