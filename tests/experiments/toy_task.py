"""Toy NNX model + optax step in the shape every system's trainer takes."""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from experiments.runner import guarded_update


class Regressor(nnx.Module):
    def __init__(self, width: int, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(3, width, rngs=rngs)
        self.out = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, x):  # x: [batch, 3] -> [batch, 1]
        return self.out(jax.nn.tanh(self.hidden(x)))


def make_task(config, fail_at_step: int | None = None):
    """Returns (init_state, train_step, batch_at) for the toy regression."""
    model = Regressor(config.model.width, nnx.Rngs(config.seed))
    optimizer = nnx.Optimizer(model, optax.adam(config.optim.learning_rate), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))
    true_w = jnp.array([[1.0], [-2.0], [0.5]])

    @jax.jit
    def jitted_step(state, batch):
        model, optimizer = nnx.merge(graphdef, state)
        x, y = batch

        def loss_fn(m):
            return jnp.mean((m(x) - y) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
        return guarded_update(state, nnx.state((model, optimizer)), metrics)

    calls = {"n": 0}

    def train_step(state, batch):
        if fail_at_step is not None and int(batch[2]) == fail_at_step:
            raise KeyboardInterrupt("simulated interruption")
        calls["n"] += 1
        return jitted_step(state, batch[:2])

    def batch_at(step: int):
        key = jax.random.fold_in(jax.random.key(config.seed), step)
        x = jax.random.normal(key, (config.train.batch_size, 3))
        y = x @ true_w
        if config.get("nan_at_step", 0) and step + 1 >= config.nan_at_step:
            y = jnp.full_like(y, jnp.inf)
        return x, y, step

    return state, train_step, batch_at, calls
