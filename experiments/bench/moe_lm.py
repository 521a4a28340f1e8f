"""MoE language-model benchmark keys (merged into ``make bench-moe`` by experiments/bench/moe.py).

``run(quick)`` times one full training step (forward, backward, AdamW) of the byte-level MoE
LM and of the dense LM with the same active parameters (``d_ff = top_k · d_expert``) side
by side in this process (``experiments.bench.timing``), compile time excluded:

  lm_moe_over_dense   MoE LM step ÷ dense LM step, {median, min, max}. Target ≤ 1.25.
  lm_tokens_per_s     trained tokens per second of the MoE LM, {median, min, max}.
  lm_mfu              model FLOPs/s (``6·N_active + 12·L·d·S`` per token) ÷ the FLOP/s of one
                      square float32 matmul timed in the same repeats (per-repeat ratio).

Standalone: ``python -m experiments.bench.moe_lm [--quick]`` prints the same JSON.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench.report import emit
from experiments.bench.timing import progress, rates, ratio, side_by_side, spread
from jaxmoe.lm import LMConfig, arm_coefs
from jaxmoe.lm_train import LMTask, OptimConfig

SHAPES = {
    "main": dict(d_model=256, num_layers=4, num_heads=4, num_experts=16, top_k=2, d_expert=256),
    "quick": dict(d_model=64, num_layers=2, num_heads=4, num_experts=8, top_k=2, d_expert=64),
}
BATCH = {"main": (16, 256), "quick": (8, 64)}  # (sequences, seq_len)


def _step(cfg: LMConfig, batch: jax.Array):
    task = LMTask(cfg, OptimConfig(num_steps=100, warmup_steps=10))
    coefs = arm_coefs("simbal")
    step = jax.jit(lambda s, b: task.train_step(s, b, coefs)[0])
    state = {"s": task.init(0)}

    def call():
        state["s"] = step(state["s"], batch)
        return state["s"]

    return call


def run(quick: bool = False) -> dict:
    """The ``lm_*`` keys (see the module docstring)."""
    name = "quick" if quick else "main"
    shape, (b, s) = SHAPES[name], BATCH[name]
    repeats = 3 if quick else 7
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 256, (b, s + 1)), jnp.int32)
    moe_cfg = LMConfig(**shape, moe_losses=("simbal",))
    dense_cfg = LMConfig(**shape, dense=True, moe_losses=())
    n = 1024 if jax.default_backend() == "cpu" else 4096
    a = jnp.ones((n, n), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    progress(f"LM train step, MoE vs dense, equal active params ({name}: {shape}, B={b}, S={s})")
    variants = {"moe": _step(moe_cfg, batch), "dense": _step(dense_cfg, batch)}
    variants["matmul"] = lambda: matmul(a)  # the MFU denominator, timed in the same repeats
    times = side_by_side(variants, repeats)
    tokens = b * s
    tok_s = rates(times, {"moe": tokens, "dense": tokens, "matmul": 1})
    model_flops = moe_cfg.train_flops_per_token(s) * tokens
    mfu = (model_flops / times["moe"]) / (2.0 * n**3 / times["matmul"])
    return {
        "lm_moe_over_dense": ratio(times, "moe", "dense"),
        "lm_tokens_per_s": tok_s["moe"],
        "lm_dense_tokens_per_s": tok_s["dense"],
        "lm_mfu": spread(mfu),
        "lm_shape": {**shape, "batch": b, "seq_len": s, "backend": jax.default_backend()},
        "lm_matmul_gflops": spread(2.0 * n**3 / times["matmul"] / 1e9, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="", help="also write the JSON here")
    args = parser.parse_args(argv)
    emit(run(quick=args.quick), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
