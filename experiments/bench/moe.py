"""MoE layer benchmark (JSON on stdout and in a file): ``python -m experiments.bench.moe``.

Forward + backward, float32, compile time excluded. Every figure compares variants
timed **side by side in one process** through ``experiments.bench.timing`` (each repeat
runs every variant in turn, an untimed call then a timed one), and every ratio is the
``{median, min, max}`` of the per-repeat ratios. Each step is ``jax.grad`` of
``sum(y · c)`` with a fixed random ``c`` (a broadcast cotangent would let XLA simplify the
dense baseline's backward pass) plus the layer's auxiliary loss, differentiated w.r.t.
the input and all weights. Progress goes to stderr.

Keys (main shape T=8192, d_model=256, E=16, k=2, d_expert=256; ``large`` repeats the
layer keys at T=8192, d_model=512, E=32, k=4, d_expert=256, OLMoE-like fine experts):

  moe_over_dense          dropless layer (``grouped_matmul="auto"``) ÷ dense SwiGLU MLP with
                          d_ff = k·d_expert (same active FLOPs). Target ≤ 1.1 (large ≤ 1.2).
  allexperts_over_moe     a layer that runs every expert on every token and weights
                          them by the (mostly zero) gates ÷ the dropless layer. Target ≥ 5.
  capacity_over_dropless  capacity dispatch (capacity factor 1.25) ÷ dropless.
  simbal_overhead         cost of the SimBal loss + gradient alone ÷ the dropless step
                          (``simbal_overhead_paired``: the noisy paired difference).
  gflops_fraction         achieved FLOP/s of the dropless layer (useful FLOPs: 3 × the
                          forward's 2·T·k·3·d·d_expert + router) ÷ FLOP/s of one 2048³
                          float32 matmul.
  sharded_over_single     the layer on a 2×4 (data × expert) mesh of 8 fake CPU devices
                          (a subprocess with ``--xla_force_host_platform_device_count=8``)
                          ÷ the single-device layer of the main measurement (a sanity
                          figure: the fake devices share the cores).
                          ``sharded_over_single_same_process`` is the ratio inside the
                          8-device process (creating 8 fake devices slows XLA:CPU's MoE step).
  ragged_dot_over_dense   the expert matmuls alone (balanced groups, no routing) through
                          ``jax.lax.ragged_dot`` ÷ the dense MLP: near E/k where XLA lowers it
                          to a zero-padded dense matmul (CPU), far lower with a grouped GEMM.
  backends                ``{backend: {"moe_over_dense", "seconds"}}``: the whole layer step
                          with each grouped-matmul backend of ``--backends``, side by side
                          with the same dense step.
  backends_max_abs_diff   ``{backend: max |Δ|}`` over the outputs and all gradients of each
                          backend against ``tiled`` at a small shape (T=512, d=64, E=8, k=2),
                          megablox in Pallas interpret mode off TPU (0 means bit-identical).
  lm_moe_over_dense, lm_tokens_per_s, lm_mfu
                          the MoE language model's train step (``experiments.bench.moe_lm``,
                          merged when that module exists).

Also reported: ``seconds`` (median step times), ``rows_over_assignments`` (rows the
grouped matmul ran ÷ T·k: tile padding), device and load information
(``backend_sets_of``: the platform whose backend sets were used, see ``--platform``).

Just the layer keys of both shapes (what the layer targets are judged on)::

    python -m experiments.bench.moe --only layer   # make bench-moe ARGS="--only layer"

GPU/TPU check (the one command to run on a lent accelerator; < 3 minutes)::

    python -m experiments.bench.moe --accelerator-check
    # the same through make: make bench-moe ARGS=--accelerator-check

the same as ``--no-large --no-sharded --quick-lm --repeats 5`` with every backend native
to the platform timed under ``backends`` (the default ``--backends``: ``tiled`` on CPU,
``tiled,ragged_dot`` on GPU, ``tiled,ragged_dot,megablox`` on TPU; megablox off TPU only
interprets, so it is timed on CPU only when asked for). ``backends_max_abs_diff`` covers
all three backends on CPU and TPU and the native ones on GPU. ``--platform gpu`` (or
``tpu``) picks those backend sets on any machine, so the check's code path can be run on
CPU first: ``--accelerator-check --platform gpu`` (ragged_dot there is only a padded
dense matmul, so its times mean nothing on CPU).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.bench.report import default_out, emit
from experiments.bench.timing import progress, ratio, side_by_side, spread
from jaxmoe import MoEConfig, MoELayer, all_experts_swiglu, moe_forward, simbal_loss
from jaxmoe.experts import swiglu
from jaxmoe.routing import router_logits, token_choice

MAIN = dict(tokens=8192, d_model=256, num_experts=16, top_k=2, d_expert=256)
LARGE = dict(tokens=8192, d_model=512, num_experts=32, top_k=4, d_expert=256)
DIFF = dict(tokens=512, d_model=64, num_experts=8, top_k=2, d_expert=64)
SEQ = 1024  # tokens per sequence (fewer for small shapes, so the batch splits over 8 devices)
BACKENDS = ("tiled", "ragged_dot", "megablox")
LM_MODULE = "experiments.bench.moe_lm"
NATIVE = {"cpu": ("tiled",), "gpu": ("tiled", "ragged_dot"), "tpu": BACKENDS}


def _config(shape: dict, **kw) -> MoEConfig:
    return MoEConfig(
        d_model=shape["d_model"],
        num_experts=shape["num_experts"],
        top_k=shape["top_k"],
        d_expert=shape["d_expert"],
        **kw,
    )


def _inputs(shape: dict, seed: int = 0):
    tokens, d = shape["tokens"], shape["d_model"]
    keys = jax.random.split(jax.random.key(seed), 2)
    seq = min(SEQ, max(1, tokens // 8))
    x = jax.random.normal(keys[0], (tokens // seq, seq, d), jnp.float32)
    return x, jax.random.normal(keys[1], x.shape, jnp.float32)


def _moe_grad(cfg: MoEConfig, cot: jax.Array, mesh=None):
    def loss(p, x):
        y, aux = moe_forward(p, x, cfg, mesh=mesh)
        return jnp.sum(y * cot) + aux.loss

    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def _dense_grad(shape: dict, cot: jax.Array, seed: int = 0):
    d, k, de = shape["d_model"], shape["top_k"], shape["d_expert"]
    keys = jax.random.split(jax.random.key(seed + 1), 2)
    w = (
        jax.random.normal(keys[0], (d, 2 * k * de)) * d**-0.5,
        jax.random.normal(keys[1], (k * de, d)) * (k * de) ** -0.5,
    )

    def dense(w, x):
        return jnp.sum(swiglu(x.reshape(-1, d), *w) * cot.reshape(-1, d))

    return jax.jit(jax.grad(dense, argnums=(0, 1))), w


def _all_experts_grad(shape: dict, cot: jax.Array):
    d, k = shape["d_model"], shape["top_k"]

    def loss(p, x):
        xf = x.reshape(-1, d)
        r = token_choice(router_logits(xf, p.router_kernel), k)
        rows = jnp.arange(xf.shape[0])[:, None]
        gates = jnp.zeros((xf.shape[0], shape["num_experts"])).at[rows, r.expert_ids].set(r.gates)
        y = jnp.sum(all_experts_swiglu(xf, p.w_in, p.w_down) * gates[..., None], axis=1)
        return jnp.sum(y * cot.reshape(-1, d))

    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def _variants(shape: dict, backends, with_all: bool = True):
    """Zero-argument step callables for ``side_by_side``, and the shared params/input."""
    x, cot = _inputs(shape)
    base = _config(shape, losses=())
    params = MoELayer(base, rngs=nnx.Rngs(0)).params()
    dense, dense_w = _dense_grad(shape, cot)
    steps = {
        "dense": dense,
        "dropless": _moe_grad(base, cot),
        "dropless_simbal": _moe_grad(_config(shape, losses={"simbal": 0.1}), cot),
        "capacity": _moe_grad(_config(shape, losses=(), dispatch="capacity"), cot),
    }
    if with_all:
        steps["all_experts"] = _all_experts_grad(shape, cot)
    for name in backends:
        steps[f"backend_{name}"] = _moe_grad(_config(shape, losses=(), grouped_matmul=name), cot)
    args = {name: (dense_w, x) if name == "dense" else (params, x) for name in steps}
    variants = {name: (lambda f=fn, a=args[name]: f(*a)) for name, fn in steps.items()}
    return variants, params, x, base


def _seconds(times) -> dict:
    return {name: round(float(np.median(t)), 6) for name, t in times.items()}


def _backend_keys(times, backends) -> dict:
    return {
        name: {
            "moe_over_dense": ratio(times, f"backend_{name}", "dense"),
            "seconds": spread(times[f"backend_{name}"], 6),
        }
        for name in backends
    }


def _ragged_dot_ratio(shape: dict, repeats: int) -> dict:
    t, d, k, de, e = (shape[n] for n in ("tokens", "d_model", "top_k", "d_expert", "num_experts"))
    keys = jax.random.split(jax.random.key(3), 6)
    rows = jax.random.normal(keys[0], (t * k, d), jnp.float32)
    cot = jax.random.normal(keys[1], (t * k, d), jnp.float32)
    sizes = jnp.full((e,), t * k // e, jnp.int32)
    w_in = jax.random.normal(keys[2], (e, d, 2 * de)) * d**-0.5
    w_out = jax.random.normal(keys[3], (e, de, d)) * de**-0.5
    w1 = jax.random.normal(keys[4], (d, 2 * k * de)) * d**-0.5
    w2 = jax.random.normal(keys[5], (k * de, d)) * (k * de) ** -0.5

    def ragged(w_in, w_out, x):
        h = jax.lax.ragged_dot(x, w_in, sizes)
        gate, up = jnp.split(h, 2, axis=-1)
        return jnp.sum(jax.lax.ragged_dot(jax.nn.silu(gate) * up, w_out, sizes) * cot)

    def dense(w1, w2, x):
        return jnp.sum(swiglu(x, w1, w2) * cot[:t])

    grad = lambda f: jax.jit(jax.grad(f, argnums=(0, 1, 2)))  # noqa: E731
    dense_step, ragged_step = grad(dense), grad(ragged)
    times = side_by_side(
        {
            "dense": lambda: dense_step(w1, w2, rows[:t]),
            "ragged": lambda: ragged_step(w_in, w_out, rows),
        },
        repeats,
    )
    return ratio(times, "ragged", "dense")


def diff_backends(platform: str | None = None) -> tuple[str, ...]:
    """Backends ``backends_max_abs_diff`` checks: all on CPU and TPU, the native ones on GPU."""
    platform = platform or jax.default_backend()
    return BACKENDS if platform in ("cpu", "tpu") else default_backends(platform)


def backends_max_abs_diff(shape: dict = DIFF, backends=None) -> dict:
    """``{backend: max |Δ|}`` of outputs and all gradients against the tiled backend.

    ``backends`` None: ``diff_backends()``. Matmuls run at ``"highest"`` precision, so
    the figure measures the backend, not TF32 (GPU) or bfloat16 passes (TPU) of float32
    matmuls.
    """
    if backends is None:
        backends = diff_backends()
    x, cot = _inputs(shape, seed=7)
    params = MoELayer(_config(shape, losses=()), rngs=nnx.Rngs(1)).params()

    def run(name):
        cfg = _config(shape, losses=("lbl", "z_loss"), grouped_matmul=name)

        def loss(p, x):
            y, aux = moe_forward(p, x, cfg)
            return jnp.sum(y * cot) + aux.loss, y

        with jax.default_matmul_precision("highest"):
            grads, y = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(params, x)
        return [np.asarray(a) for a in jax.tree.leaves((y, grads))]

    want = run("tiled")
    out = {}
    for name in backends:
        if name != "tiled":
            progress(f"backends_max_abs_diff: {name} vs tiled at {shape}")
            got = run(name)
            out[name] = float(max(np.max(np.abs(a - b)) for a, b in zip(got, want)))
    return out


def _rows_over_assignments(params, x, cfg) -> float:
    _, aux = jax.jit(lambda p, x: moe_forward(p, x, cfg))(params, x)
    tokens = x.shape[0] * x.shape[1]
    return float(aux.metrics["rows_computed"]) / (tokens * cfg.top_k)


def _matmul_flops_per_s(repeats: int) -> float:
    n = 2048
    a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(2), (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)
    times = side_by_side({"mm": lambda: mm(a, b)}, repeats)
    return 2 * n**3 / float(np.median(times["mm"]))


def _layer_flops(shape: dict) -> float:
    t, d, k, de, e = (shape[n] for n in ("tokens", "d_model", "top_k", "d_expert", "num_experts"))
    forward = 2 * t * k * 3 * d * de + 2 * t * d * e
    return 3.0 * forward


def _simbal_cost(params, repeats: int) -> float:
    step = jax.jit(jax.grad(lambda r: 0.1 * simbal_loss(r)))
    times = side_by_side({"simbal": lambda: step(params.router_kernel)}, repeats)
    return float(np.median(times["simbal"]))


def _sharded(shape: dict, repeats: int) -> dict:
    """Expert-parallel (2×4 mesh) vs single-device steps, in this (8-device) process."""
    mesh = jax.make_mesh((2, 4), ("data", "expert"))
    x, cot = _inputs(shape)
    base = _config(shape, losses=())
    params = MoELayer(base, rngs=nnx.Rngs(0)).params()
    single, sharded = _moe_grad(base, cot), _moe_grad(base, cot, mesh)
    times = side_by_side(
        {"single": lambda: single(params, x), "sharded": lambda: sharded(params, x)}, repeats
    )
    return {
        "sharded_s": float(np.median(times["sharded"])),
        "single_s": float(np.median(times["single"])),
        "ratio": ratio(times, "sharded", "single"),
    }


def _sharded_subprocess(shape: dict, repeats: int) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=8".strip()
    cmd = [sys.executable, "-m", "experiments.bench.moe", "--sharded-only"]
    cmd += ["--repeats", str(repeats), "--shape", json.dumps(shape)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _lm_results(quick: bool) -> dict:
    """The MoE-LM keys from ``experiments.bench.moe_lm`` when that module exists."""
    try:
        moe_lm = importlib.import_module(LM_MODULE)
    except ModuleNotFoundError as err:
        if err.name != LM_MODULE:  # a missing dependency *of* moe_lm is a real error
            raise
        progress("experiments.bench.moe_lm not found: no lm_* keys")
        return {}
    progress("MoE language model step (experiments.bench.moe_lm)")
    return moe_lm.run(quick=quick)


def default_backends(platform: str | None = None) -> tuple[str, ...]:
    """Backends that run natively on ``platform`` (megablox off TPU only interprets)."""
    return NATIVE.get(platform or jax.default_backend(), ("tiled", "ragged_dot"))


def _layer_keys(times, params, x, base, shape, peak, repeats) -> dict:
    step_s = float(np.median(times["dropless"]))
    return {
        "moe_over_dense": ratio(times, "dropless", "dense"),
        "capacity_over_dropless": ratio(times, "capacity", "dropless"),
        "simbal_overhead": round(_simbal_cost(params, 3 * repeats) / step_s, 6),
        "simbal_overhead_paired": round(
            float(np.median(times["dropless_simbal"] / times["dropless"])) - 1.0, 4
        ),
        "gflops_fraction": round(_layer_flops(shape) / step_s / peak, 4),
        "layer_gflops_per_s": round(_layer_flops(shape) / step_s / 1e9, 3),
        "rows_over_assignments": _rows_over_assignments(params, x, base),
        "seconds": _seconds(times),
        "shape": shape,
    }


def run(
    repeats: int = 7,
    main: dict = MAIN,
    large: dict | None = LARGE,
    sharded: bool = True,
    backends=None,
    diff_shape: dict | None = DIFF,
    lm: bool = True,
    quick_lm: bool = False,
    layer_only: bool = False,
    platform: str | None = None,
) -> dict:
    """Runs every measurement; returns the JSON-ready result.

    ``main`` / ``large`` are shapes (``large=None`` skips the second one); ``sharded=False``
    skips the 8-device subprocess (its keys are then None); ``backends`` are the
    grouped-matmul backends timed under ``backends`` (None: ``default_backends(platform)``);
    ``diff_shape=None`` skips ``backends_max_abs_diff`` (which checks
    ``diff_backends(platform)``); ``lm=False`` skips the LM keys. ``layer_only`` keeps just
    the layer keys of both shapes (no ``backends``, ``ragged_dot_over_dense``,
    ``backends_max_abs_diff``, sharded or LM keys). ``platform`` (None: this one) picks the
    backend sets as on that platform, so the GPU/TPU code path can run here.
    """
    if layer_only:
        backends, diff_shape, sharded, lm = (), None, False, False
    backends = tuple(default_backends(platform) if backends is None else backends)
    progress(f"main shape {main}: dense, dropless, capacity, all experts, backends {backends}")
    variants, params, x, base = _variants(main, backends)
    times = side_by_side(variants, repeats)
    progress("matmul peak, SimBal cost, rows")
    peak = _matmul_flops_per_s(repeats)
    out: dict = _layer_keys(times, params, x, base, main, peak, repeats)
    out["allexperts_over_moe"] = ratio(times, "all_experts", "dropless")
    out["matmul_gflops_per_s"] = round(peak / 1e9, 3)
    if not layer_only:
        out["backends"] = _backend_keys(times, backends)
        progress("ragged_dot expert matmuls vs dense")
        out["ragged_dot_over_dense"] = _ragged_dot_ratio(main, min(3, repeats))
    if diff_shape is not None:
        out["backends_max_abs_diff"] = backends_max_abs_diff(diff_shape, diff_backends(platform))
    if sharded:
        progress("expert-parallel 2×4 mesh in an 8-device subprocess")
    ep = _sharded_subprocess(main, repeats) if sharded else None
    step_s = float(np.median(times["dropless"]))
    out["sharded_over_single"] = round(ep["sharded_s"] / step_s, 4) if ep else None
    out["sharded_over_single_same_process"] = ep["ratio"] if ep else None
    if large is not None:
        progress(f"large shape {large}")
        variants_l, params_l, x_l, base_l = _variants(large, (), with_all=False)
        times_l = side_by_side(variants_l, max(3, repeats // 2))
        out["large"] = _layer_keys(times_l, params_l, x_l, base_l, large, peak, repeats)
    if lm:
        out.update(_lm_results(quick_lm))
    out["repeats"] = repeats
    out["device"] = f"{jax.devices()[0].device_kind} x{jax.device_count()} ({os.cpu_count()} cores)"
    out["backend"] = jax.default_backend()
    out["backend_sets_of"] = platform or jax.default_backend()
    out["jax"] = jax.__version__
    out["load_average"] = [round(v, 2) for v in os.getloadavg()]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=default_out("moe"), help="also write the JSON here")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-large", action="store_true", help="skip the larger shape")
    parser.add_argument("--no-sharded", action="store_true", help="skip the 8-device subprocess")
    parser.add_argument("--no-lm", action="store_true", help="skip the MoE-LM keys")
    parser.add_argument("--quick-lm", action="store_true", help="MoE-LM keys at a small shape")
    parser.add_argument(
        "--backends",
        default=None,
        help=f"comma-separated grouped-matmul backends to time, from {BACKENDS} "
        "(default: the ones native to this platform)",
    )
    parser.add_argument(
        "--accelerator-check",
        action="store_true",
        help="the short GPU/TPU check: --no-large --no-sharded --quick-lm --repeats 5",
    )
    parser.add_argument(
        "--only",
        choices=("layer",),
        default=None,
        help="layer: just the layer keys at the main and large shapes (no backends, "
        "ragged_dot, sharded or LM keys)",
    )
    parser.add_argument(
        "--platform",
        choices=tuple(NATIVE),
        default=None,
        help="pick the backend sets as on this platform (default: the one JAX runs on); "
        "e.g. --accelerator-check --platform gpu runs the GPU check's code path on CPU",
    )
    parser.add_argument("--sharded-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shape", default=json.dumps(MAIN), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.accelerator_check:
        args.no_large, args.no_sharded, args.quick_lm, args.repeats = True, True, True, 5
    if args.sharded_only:  # child process with 8 fake devices
        print(json.dumps(_sharded(json.loads(args.shape), args.repeats)))
        return 0
    backends = None
    if args.backends:
        backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
        unknown = sorted(set(backends) - set(BACKENDS))
        if unknown:
            parser.error(f"unknown backends {unknown}; choose from {BACKENDS}")
    result = run(
        repeats=args.repeats,
        large=None if args.no_large else LARGE,
        sharded=not args.no_sharded,
        backends=backends,
        lm=not args.no_lm,
        quick_lm=args.quick_lm,
        layer_only=args.only == "layer",
        platform=args.platform,
    )
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
