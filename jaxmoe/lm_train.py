"""Pure training and evaluation steps of ``MoELM`` (AdamW, warm-up + cosine, loss-free bias).

The state is a pytree ``nnx.state((model, optimizer))``; steps are pure functions of
``(state, batch, coefs)``, so the same step trains one model under ``jax.jit`` or many
seeds/arms at once under ``jax.vmap`` (``coefs`` batched, the batch shared). Example::

    task = LMTask(cfg, optim=OptimConfig(learning_rate=3e-3, num_steps=500))
    state = task.init(seed=0)
    step = jax.jit(task.train_step)
    state, metrics = step(state, batch, arm_coefs("simbal"))   # batch [B, S + 1] int32
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from jaxmoe.lm import ArmCoefs, LMConfig, MoELM, lm_loss, place
from jaxmoe.routing import loss_free_bias_update


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up from ``init_fraction·lr`` and cosine decay to ``end_fraction·lr``
    (the paper: weight decay 0.01, warm-up from 10 %, decay to 10 %)."""

    learning_rate: float = 3e-3
    num_steps: int = 1000
    warmup_steps: int = 100
    init_fraction: float = 0.1
    end_fraction: float = 0.1
    weight_decay: float = 0.01
    b1: float = 0.9
    b2: float = 0.95
    clip_norm: float = 1.0

    def schedule(self) -> optax.Schedule:
        warm = max(1, min(self.warmup_steps, self.num_steps - 1))
        return optax.warmup_cosine_decay_schedule(
            init_value=self.init_fraction * self.learning_rate,
            peak_value=self.learning_rate,
            warmup_steps=warm,
            decay_steps=max(self.num_steps, warm + 1),
            end_value=self.end_fraction * self.learning_rate,
        )

    def make(self) -> optax.GradientTransformation:
        """Clip → AdamW; weight decay on matrices only (not norms' scales)."""
        decay_mask = lambda params: jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)  # noqa: E731
        return optax.chain(
            optax.clip_by_global_norm(self.clip_norm),
            optax.adamw(
                self.schedule(),
                b1=self.b1,
                b2=self.b2,
                weight_decay=self.weight_decay,
                mask=decay_mask,
            ),
        )


class LMTask:
    """Builds the model + optimiser state and the pure steps for one ``LMConfig``.

    Args:
      cfg: model config.
      optim: optimiser config.
      mesh: optional device mesh (see ``MoELM``).
    """

    def __init__(self, cfg: LMConfig, optim: OptimConfig, mesh: Mesh | None = None):
        self.cfg, self.optim, self.mesh = cfg, optim, mesh
        model, opt = self._build(0)
        self.graphdef, _ = nnx.split((model, opt))

    def _build(self, seed: int):
        model = MoELM(self.cfg, rngs=nnx.Rngs(seed), mesh=self.mesh)
        opt = nnx.Optimizer(model, self.optim.make(), wrt=nnx.Param)
        if model.mesh is not None:  # counters too, so the first step's output types match
            place(opt, model.mesh)
        return model, opt

    def init(self, seed: int) -> Any:
        """Initial state (model + optimiser) of ``seed``."""
        return nnx.state(self._build(seed))

    def init_many(self, seeds) -> Any:
        """States of several seeds stacked on a leading axis (for ``vmap``)."""
        states = [self.init(int(s)) for s in seeds]
        return jax.tree.map(lambda *a: jnp.stack(a), *states)

    def model(self, state) -> MoELM:
        return nnx.merge(self.graphdef, state)[0]

    def train_step(self, state, batch: jax.Array, coefs: ArmCoefs):
        """One AdamW step on ``batch [B, S + 1]``; then the loss-free bias update.

        Returns:
          ``(new_state, metrics)``: scalars from ``lm_loss`` plus ``grad_norm`` and
          ``learning_rate``, and ``tokens_per_expert [n_moe, E]``.
        """
        model, opt = nnx.merge(self.graphdef, state)
        step = opt.step[...]

        def loss_fn(m):
            return lm_loss(m, batch, coefs)

        (_, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        opt.update(model, grads)
        for i, layer in enumerate(model.moe_layers):
            if layer.router_bias is not None:
                load = metrics["tokens_per_expert"][i]
                layer.router_bias[...] = loss_free_bias_update(
                    layer.router_bias[...], load, coefs.bias_rate
                )
        metrics["grad_norm"] = optax.tree.norm(grads)
        metrics["learning_rate"] = self.optim.schedule()(step)
        return nnx.state((model, opt)), metrics

    def eval_step(self, state, batch: jax.Array, coefs: ArmCoefs, prune_threshold=None):
        """``lm_loss`` metrics of ``batch`` without updating anything."""
        _, metrics = lm_loss(self.model(state), batch, coefs, prune_threshold=prune_threshold)
        return metrics
