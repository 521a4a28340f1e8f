"""MoE layer benchmark (JSON on stdout and in a file): ``python -m experiments.bench.moe``.

Forward + backward, float32, on CPU, compile time excluded. Every figure compares
variants timed **side by side in one process**: each repeat runs every variant in
turn (an untimed call, then a timed one), and a ratio is the median over repeats of
the per-repeat ratio (the machine may be shared, so interleaving matters more than
the repeat count). Each step is
``jax.grad`` of ``sum(y · c)`` with a fixed random ``c`` (a broadcast cotangent would let
XLA simplify the dense baseline's backward pass) plus the layer's auxiliary loss,
differentiated w.r.t. the input and all weights.

Keys (main shape T=8192, d_model=256, E=16, k=2, d_expert=256; ``large`` repeats the
first four at T=8192, d_model=512, E=32, k=4, d_expert=256, OLMoE-like fine experts):

  moe_over_dense          dropless layer ÷ dense SwiGLU MLP with d_ff = k·d_expert
                          (same active FLOPs). Target ≤ 1.3.
  allexperts_over_moe     a layer that runs every expert on every token and weights
                          them by the (mostly zero) gates ÷ the dropless layer. Target ≥ 5.
  capacity_over_dropless  capacity dispatch (capacity factor 1.25) ÷ dropless.
  simbal_overhead         extra step time from adding SimBal (coefficient 0.1) ÷ step
                          time, measured as the cost of the SimBal loss + gradient alone
                          (the paired difference of two ~100 ms steps is below timing
                          noise); ``simbal_overhead_paired`` is that noisy paired figure.
  gflops_fraction         achieved FLOP/s of the dropless layer (useful FLOPs: 3 × the
                          forward's 2·T·k·3·d·d_expert + router) ÷ FLOP/s of one
                          2048³ float32 matmul.
  sharded_over_single     the layer on a 2×4 (data × expert) mesh of 8 fake CPU devices
                          (a subprocess with ``--xla_force_host_platform_device_count=8``)
                          ÷ the single-device layer of the main measurement (a sanity figure:
                          the fake devices share the two cores). The main measurement runs in
                          a process with one CPU device: on this XLA:CPU build, merely creating
                          8 fake devices slows the single-device MoE step by ~35% (the dense
                          MLP is unaffected), so single-device figures are not taken there.
                          ``sharded_over_single_same_process`` is the ratio inside the
                          8-device process.

  ragged_dot_over_dense   the expert matmuls alone (perfectly balanced groups, no routing)
                          through ``jax.lax.ragged_dot`` ÷ the dense MLP: why the layer does
                          not use it on CPU (XLA lowers it to a zero-padded dense matmul).

Also reported: ``seconds`` (median step times), ``rows_over_assignments`` (rows the
grouped matmul ran ÷ T·k: tile padding), device and load information.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.bench.report import default_out, emit
from jaxmoe import MoEConfig, MoELayer, all_experts_swiglu, moe_forward, simbal_loss
from jaxmoe.experts import swiglu
from jaxmoe.routing import router_logits, token_choice

MAIN = dict(tokens=8192, d_model=256, num_experts=16, top_k=2, d_expert=256)
LARGE = dict(tokens=8192, d_model=512, num_experts=32, top_k=4, d_expert=256)
SEQ = 1024  # tokens per sequence (fewer for small shapes, so the batch splits over 8 devices)


def _timed_side_by_side(steps: dict, repeats: int) -> dict[str, np.ndarray]:
    """Runs each compiled step once per repeat, in turn; returns seconds per step.

    Each timed call follows an untimed call of the same step, so a step is not charged
    for the cache and page state a different (e.g. much larger) step left behind.
    """
    for fn, args in steps.values():  # compile
        jax.block_until_ready(fn(*args))
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, (fn, args) in steps.items():
            jax.block_until_ready(fn(*args))
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - start)
    return {name: np.asarray(t) for name, t in times.items()}


def _ratio(times, a, b) -> float:
    return float(np.median(times[a] / times[b]))


def _config(shape: dict, **kw) -> MoEConfig:
    return MoEConfig(
        d_model=shape["d_model"],
        num_experts=shape["num_experts"],
        top_k=shape["top_k"],
        d_expert=shape["d_expert"],
        **kw,
    )


def _steps(shape: dict, seed: int = 0, with_all: bool = True):
    """Compiled gradient steps for the dense baseline and the MoE variants."""
    tokens, d = shape["tokens"], shape["d_model"]
    k, de, num_experts = shape["top_k"], shape["d_expert"], shape["num_experts"]
    keys = jax.random.split(jax.random.key(seed), 4)
    seq = min(SEQ, max(1, tokens // 8))
    x = jax.random.normal(keys[0], (tokens // seq, seq, d), jnp.float32)
    cot = jax.random.normal(keys[1], x.shape, jnp.float32)
    dense_w = (
        jax.random.normal(keys[2], (d, 2 * k * de)) * d**-0.5,
        jax.random.normal(keys[3], (k * de, d)) * (k * de) ** -0.5,
    )

    def dense(w, x):
        y = swiglu(x.reshape(-1, d), *w)
        return jnp.sum(y * cot.reshape(-1, d))

    def moe(cfg):
        def loss(p, x):
            y, aux = moe_forward(p, x, cfg)
            return jnp.sum(y * cot) + aux.loss

        return loss

    def all_experts(cfg):
        def loss(p, x):
            xf = x.reshape(-1, d)
            r = token_choice(router_logits(xf, p.router_kernel), k)
            gates = (
                jnp.zeros((xf.shape[0], num_experts))
                .at[jnp.arange(xf.shape[0])[:, None], r.expert_ids]
                .set(r.gates)
            )
            w_in = jnp.concatenate([p.w_gate, p.w_up], -1)
            y = jnp.sum(all_experts_swiglu(xf, w_in, p.w_down) * gates[..., None], axis=1)
            return jnp.sum(y * cot.reshape(-1, d))

        return loss

    base = _config(shape, losses=())
    params = MoELayer(base, rngs=nnx.Rngs(seed)).params()
    grad = lambda f: jax.jit(jax.grad(f, argnums=(0, 1)))  # noqa: E731
    steps = {
        "dense": (grad(dense), (dense_w, x)),
        "dropless": (grad(moe(base)), (params, x)),
        "dropless_simbal": (grad(moe(_config(shape, losses={"simbal": 0.1}))), (params, x)),
        "capacity": (grad(moe(_config(shape, losses=(), dispatch="capacity"))), (params, x)),
    }
    if with_all:
        steps["all_experts"] = (grad(all_experts(base)), (params, x))
    return steps, params, x, base


def _ragged_dot_ratio(shape: dict, repeats: int) -> float:
    t, d, k, de, e = (shape[n] for n in ("tokens", "d_model", "top_k", "d_expert", "num_experts"))
    keys = jax.random.split(jax.random.key(3), 7)
    rows = jax.random.normal(keys[0], (t * k, d), jnp.float32)
    cot = jax.random.normal(keys[1], (t * k, d), jnp.float32)
    sizes = jnp.full((e,), t * k // e, jnp.int32)
    w_in = jax.random.normal(keys[2], (e, d, 2 * de)) * d**-0.5
    w_out = jax.random.normal(keys[3], (e, de, d)) * de**-0.5
    dense_w = (
        jax.random.normal(keys[4], (d, 2 * k * de)) * d**-0.5,
        jax.random.normal(keys[5], (k * de, d)) * (k * de) ** -0.5,
    )

    def ragged(w_in, w_out, x):
        h = jax.lax.ragged_dot(x, w_in, sizes)
        gate, up = jnp.split(h, 2, axis=-1)
        return jnp.sum(jax.lax.ragged_dot(jax.nn.silu(gate) * up, w_out, sizes) * cot)

    def dense(w1, w2, x):
        return jnp.sum(swiglu(x, w1, w2) * cot[:t])

    grad = lambda f: jax.jit(jax.grad(f, argnums=(0, 1, 2)))  # noqa: E731
    times = _timed_side_by_side(
        {
            "dense": (grad(dense), (*dense_w, rows[:t])),
            "ragged": (grad(ragged), (w_in, w_out, rows)),
        },
        repeats,
    )
    return _ratio(times, "ragged", "dense")


def _rows_over_assignments(params, x, cfg) -> float:
    _, aux = jax.jit(lambda p, x: moe_forward(p, x, cfg))(params, x)
    tokens = x.shape[0] * x.shape[1]
    return float(aux.metrics["rows_computed"]) / (tokens * cfg.top_k)


def _matmul_flops_per_s(repeats: int) -> float:
    n = 2048
    a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(2), (n, n), jnp.float32)
    times = _timed_side_by_side({"mm": (jax.jit(jnp.matmul), (a, b))}, repeats)
    return 2 * n**3 / float(np.median(times["mm"]))


def _layer_flops(shape: dict) -> float:
    t, d, k, de, e = (shape[n] for n in ("tokens", "d_model", "top_k", "d_expert", "num_experts"))
    forward = 2 * t * k * 3 * d * de + 2 * t * d * e
    return 3.0 * forward


def _simbal_cost(params, repeats: int) -> float:
    step = jax.jit(jax.grad(lambda r: 0.1 * simbal_loss(r)))
    times = _timed_side_by_side({"simbal": (step, (params.router_kernel,))}, repeats)
    return float(np.median(times["simbal"]))


def _sharded(shape: dict, repeats: int) -> dict:
    """Expert-parallel (2×4 mesh) vs single-device steps, in this (8-device) process."""
    mesh = jax.make_mesh((2, 4), ("data", "expert"))
    _, params, x, base = _steps(shape, with_all=False)
    cot = jax.random.normal(jax.random.key(5), x.shape, jnp.float32)

    def loss(mesh):
        def f(p, x):
            y, aux = moe_forward(p, x, base, mesh=mesh)
            return jnp.sum(y * cot) + aux.loss

        return jax.jit(jax.grad(f, argnums=(0, 1)))

    times = _timed_side_by_side(
        {"single": (loss(None), (params, x)), "sharded": (loss(mesh), (params, x))}, repeats
    )
    return {
        "sharded_s": float(np.median(times["sharded"])),
        "single_s": float(np.median(times["single"])),
        "ratio": _ratio(times, "sharded", "single"),
    }


def _sharded_subprocess(shape: dict, repeats: int) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=8".strip()
    cmd = [
        sys.executable,
        "-m",
        "experiments.bench.moe",
        "--sharded-only",
        "--repeats",
        str(repeats),
        "--shape",
        json.dumps(shape),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(
    repeats: int = 7, main: dict = MAIN, large: dict | None = LARGE, sharded: bool = True
) -> dict:
    """Runs every measurement; returns the JSON-ready result.

    ``main`` / ``large`` are shapes (``large=None`` skips the second one); ``sharded=False``
    skips the 8-device subprocess (its keys are then None).
    """
    out: dict = {}
    steps, params, x, base = _steps(main)
    t = _timed_side_by_side(steps, repeats)
    out["moe_over_dense"] = _ratio(t, "dropless", "dense")
    out["allexperts_over_moe"] = _ratio(t, "all_experts", "dropless")
    out["capacity_over_dropless"] = _ratio(t, "capacity", "dropless")
    step_s = float(np.median(t["dropless"]))
    out["simbal_overhead"] = _simbal_cost(params, 3 * repeats) / step_s
    out["simbal_overhead_paired"] = _ratio(t, "dropless_simbal", "dropless") - 1.0
    peak = _matmul_flops_per_s(repeats)
    out["gflops_fraction"] = _layer_flops(main) / step_s / peak
    ep = _sharded_subprocess(main, repeats) if sharded else None
    out["sharded_over_single"] = ep["sharded_s"] / step_s if ep else None
    out["sharded_over_single_same_process"] = ep["ratio"] if ep else None
    out["rows_over_assignments"] = _rows_over_assignments(params, x, base)
    out["ragged_dot_over_dense"] = _ragged_dot_ratio(main, min(3, repeats))
    out["seconds"] = {name: float(np.median(v)) for name, v in t.items()}
    out["matmul_gflops_per_s"] = peak / 1e9
    out["layer_gflops_per_s"] = _layer_flops(main) / step_s / 1e9
    out["shape"] = main
    if large is not None:
        steps_l, params_l, x_l, base_l = _steps(large, with_all=False)
        tl = _timed_side_by_side(steps_l, max(3, repeats // 2))
        step_l = float(np.median(tl["dropless"]))
        out["large"] = {
            "shape": large,
            "moe_over_dense": _ratio(tl, "dropless", "dense"),
            "capacity_over_dropless": _ratio(tl, "capacity", "dropless"),
            "simbal_overhead": _simbal_cost(params_l, 3 * repeats) / step_l,
            "gflops_fraction": _layer_flops(large) / step_l / peak,
            "rows_over_assignments": _rows_over_assignments(params_l, x_l, base_l),
            "seconds": {name: float(np.median(v)) for name, v in tl.items()},
        }
    out["repeats"] = repeats
    out["device"] = f"{jax.devices()[0].device_kind} x{jax.device_count()} ({os.cpu_count()} cores)"
    out["jax"] = jax.__version__
    out["load_average"] = list(os.getloadavg())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=default_out("moe"), help="also write the JSON here")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-large", action="store_true", help="skip the larger shape")
    parser.add_argument("--sharded-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shape", default=json.dumps(MAIN), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sharded_only:  # child process with 8 fake devices
        print(json.dumps(_sharded(json.loads(args.shape), args.repeats)))
        return 0
    result = run(repeats=args.repeats, large=None if args.no_large else LARGE)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
