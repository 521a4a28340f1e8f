"""Trains one arm of the byte-level MoE LM (``experiments/configs/moe.py``) through the runner.

Logged every ``train.log_every`` steps: loss, CE, output z-loss, MoE loss, grad norm, learning
rate and the mean over layers of MaxVio, SEU, unique experts, routing entropy and
``(RᵀR−I)²``. Every ``train.eval_every`` steps and at the end (``eval/…``): validation loss,
min-over-layers PES, tokens/s and MFU (model FLOPs/s ÷ this device's measured matmul FLOP/s).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from experiments.bench.timing import timed
from experiments.runner import Run, RunError, fit, guarded_update
from jaxmoe import data as D
from jaxmoe.lm import ArmCoefs, LMConfig, arm_coefs, auto_mesh, batch_axes, losses_for
from jaxmoe.lm_train import LMTask, OptimConfig


def lm_config(config: ml_collections.ConfigDict, arms=None) -> LMConfig:
    """The model config of ``config.model`` able to train ``arms`` (default: ``config.arm``)."""
    m = config.model
    arms = arms or (config.arm,)
    for arm in arms:
        if arm not in ("none", "lbl", "simbal", "loss_free", "loss_free+simbal"):
            raise RunError(
                f"unknown arm {arm!r}; choose none, lbl, simbal, loss_free, loss_free+simbal"
            )
    moe_losses, loss_free = losses_for(arms)
    try:
        return LMConfig(
            d_model=m.d_model, num_layers=m.num_layers, num_heads=m.num_heads,
            num_experts=m.num_experts, top_k=m.top_k, d_expert=m.d_expert,
            moe_every=m.moe_every, dense=m.dense, d_ff=m.d_ff or None,
            moe_losses=moe_losses, loss_free_bias=loss_free, gating=m.gating,
            dispatch=m.dispatch, capacity_factor=m.capacity_factor,
            tie_embeddings=m.tie_embeddings, rope_theta=m.rope_theta, dtype=m.dtype,
        )  # fmt: skip
    except ValueError as err:
        raise RunError(f"bad model config: {err}") from None


def optim_config(config: ml_collections.ConfigDict) -> OptimConfig:
    o = config.optim
    return OptimConfig(
        learning_rate=o.learning_rate, num_steps=config.train.num_steps,
        warmup_steps=o.warmup_steps, weight_decay=o.weight_decay, b2=o.b2, clip_norm=o.clip_norm,
    )  # fmt: skip


def load_data(config: ml_collections.ConfigDict) -> tuple[D.PackedTokens, D.PackedTokens]:
    """``(train, val)`` packed token streams of ``config.data`` (errors as ``RunError``)."""
    d = config.data
    try:
        data_dir = d.get("tfds_data_dir") or None
        corpus = D.load_corpus(d.corpus, max_bytes=d.max_bytes or None, seed=0, data_dir=data_dir)
        train, val = D.split(corpus, d.val_fraction)
        return (
            D.PackedTokens(train, d.seq_len, f"corpus {corpus.name} (train split)"),
            D.PackedTokens(val, d.seq_len, f"corpus {corpus.name} (validation split)"),
        )
    except ValueError as err:
        raise RunError(str(err)) from None


def matmul_peak_flops(dtype=jnp.float32, n: int | None = None, repeats: int = 5) -> float:
    """Best measured FLOP/s of one square ``n×n`` matmul on the default device."""
    n = n or (4096 if jax.default_backend() != "cpu" else 1024)
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(f(a))
    return 2.0 * n**3 / min(timed(lambda: f(a)) for _ in range(repeats))


def put_batch(host: np.ndarray, mesh, batch_dim: int = 0) -> jax.Array:
    """A host array (the same on every process) as one global array on ``mesh``, its
    ``batch_dim`` split over the batch axes (``[B, S+1]`` batches, ``[n, B, S+1]`` stacks)."""
    if mesh is None:
        return jnp.asarray(host)
    sharding = NamedSharding(mesh, P(*([None] * batch_dim), batch_axes(mesh) or None))
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


@functools.lru_cache(maxsize=8)
def compiled(cfg: LMConfig, optim: OptimConfig, mesh, arm: str, z_loss: float):
    """``(task, train_step, evaluate_fn)`` jitted once per (config, arm) in this process."""
    task = LMTask(cfg, optim, mesh=mesh)
    coefs = arm_coefs(arm, z_loss=z_loss)

    @jax.jit
    def train_step(state, batch):
        new, metrics = task.train_step(state, batch, coefs)
        metrics = {k: v for k, v in metrics.items() if k != "tokens_per_expert"}
        return guarded_update(state, new, metrics)

    @functools.partial(jax.jit, static_argnames="pes_tokens")
    def evaluate(state, batches, pes_tokens):
        return eval_metrics(task, state, batches, coefs, pes_tokens)

    return task, train_step, evaluate


def eval_metrics(task: LMTask, state, batches: jax.Array, coefs: ArmCoefs, pes_tokens: int):
    """Validation loss over ``batches [n, B, S+1]`` and PES of every MoE layer.

    Returns:
      ``{"val_loss", "pes_min", "pes_layer<i>", ...}`` float32 scalars (val loss = CE only).
    """
    ce = jax.lax.map(lambda b: task.eval_step(state, b, coefs)["ce"], batches)
    out = {"val_loss": jnp.mean(ce)}
    model = task.model(state)
    if model.moe_layers:
        hidden = model(batches[0, :, :-1], return_hidden=True).hidden
        pes = []
        for i, (layer, h) in enumerate(zip(model.moe_layers, hidden, strict=True)):
            x = h.reshape(-1, h.shape[-1])[:pes_tokens]
            pes.append(layer.expert_similarity(x))
            out[f"pes_layer{i}"] = pes[-1]
        out["pes_min"] = jnp.min(jnp.stack(pes))
    return out


class _Rate:
    """Tokens/s between evaluations, compilation and evaluation time left out."""

    def __init__(self):
        self.t0, self.step0 = None, None

    def start(self, step: int) -> None:
        self.t0, self.step0 = time.perf_counter(), step

    def rate(self, step: int, tokens_per_step: int) -> float:
        if self.t0 is None or step <= self.step0:
            return float("nan")
        return tokens_per_step * (step - self.step0) / (time.perf_counter() - self.t0)


def train(config: ml_collections.ConfigDict, workdir: Path) -> dict[str, Any]:
    """Trains ``config.arm``; returns the last logged metrics (incl. ``eval/…``)."""
    cfg, optim = lm_config(config), optim_config(config)
    train_data, val_data = load_data(config)
    batch_size = int(config.train.batch_size)
    with Run(workdir, config, name=f"moe-{config.arm}") as run:
        task, train_step, evaluate_fn = compiled(
            cfg, optim, run.mesh, config.arm, float(config.z_loss)
        )
        mesh = auto_mesh(run.mesh)
        tokens_per_step = batch_size * config.data.seq_len
        flops_per_token = cfg.train_flops_per_token(config.data.seq_len)
        peak = matmul_peak_flops(jnp.bfloat16 if cfg.dtype == "bfloat16" else jnp.float32)
        print(f"model: {cfg.active_matmul_params():,} active matmul params; measured matmul "
              f"peak {peak / 1e9:.1f} GFLOP/s", flush=True)  # fmt: skip
        val_host = val_data.eval_batches(config.data.eval_batches, batch_size)
        val_batches = put_batch(val_host, mesh, batch_dim=1)
        requested = {"step": 0}

        def batch_at(step):
            return put_batch(train_data.batch(config.seed, step, batch_size), mesh)

        prefetch = D.Prefetcher(batch_at, depth=int(config.data.prefetch))

        def next_batch(step):
            requested["step"] = step
            return prefetch(step)

        clock = _Rate()

        def step_fn(state, batch):
            out = train_step(state, batch)
            if clock.t0 is None:  # first step of this process: leave compilation out
                jax.block_until_ready(out)
                clock.start(requested["step"] + 1)
            return out

        def evaluate(state, step):
            jax.block_until_ready(state)
            rate = clock.rate(step, tokens_per_step)
            scores = evaluate_fn(state, val_batches, pes_tokens=int(config.eval.pes_tokens))
            scores = {k: float(v) for k, v in jax.device_get(scores).items()}
            scores.update(tokens_per_s=rate, mfu=rate * flops_per_token / peak)
            clock.start(step)
            return scores

        try:
            state, last = fit(
                run, task.init(config.seed), step_fn, next_batch,
                key_metric="loss", examples_per_step=tokens_per_step, evaluate=evaluate,
            )  # fmt: skip
        finally:
            prefetch.close()
    return last
