"""Safeguard throughput benchmark (JSON on stdout): ``python -m experiments.bench.safe``.

Every number is environment steps per second of a jitted ``lax.scan`` over steps of a
``vmap``-ed ``env.step`` (random actions, gymnax auto-reset), compile excluded
(``jit(...).lower(...).compile()`` first), median of timed ``block_until_ready`` calls. Compared
programs are timed interleaved in one process and each ratio is the median of the paired
(back-to-back) ratios, so it is robust to a shared machine; absolute steps/s (median) are
printed for context.

Keys (throughput ratios, first / second):
  gridworld_safeguard_over_bare  gridworld + SG3 safeguard / bare gridworld, per env count
  cartpole_safeguard_over_bare   gymnax CartPole + a 3-state spec / bare CartPole (1024 envs)
  multispec16_over_single        16 different specs x 64 envs / SG3 x 1024 envs
  speedup_vs_python              gridworld + SG3 at 1024 envs / a plain-Python loop of the same
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments.classic_control import CartPole

import jaxsafe
from experiments.bench.report import default_out, emit
from jaxsafe.envs import GRIDWORLD_LABELLER, LABELS, GridWorld
from jaxsafe.envs.gridworld import OBJECTS, SIZE, START

CARTPOLE_SPEC = {
    "name": "cartpole_centre",
    "description": "Never off-centre while tilted; once off-centre, stay upright until back.",
    "alphabet": {"propositions": ["off_centre", "tilted"]},
    "states": ["centred", "drifting", "violation"],
    "initial": "centred",
    "violation": ["violation"],
    "accepting": ["centred", "drifting"],
    "transitions": {
        "centred": {
            "off_centre and tilted": "violation",
            "off_centre and not tilted": "drifting",
            "else": "centred",
        },
        "drifting": {
            "tilted": "violation",
            "not off_centre and not tilted": "centred",
            "else": "drifting",
        },
    },
}
CARTPOLE_LABELLER = jaxsafe.Labeller.from_propositions(
    ["off_centre", "tilted"], lambda s: jnp.stack([jnp.abs(s.x) > 1.0, jnp.abs(s.theta) > 0.1])
)


def random_specs(k: int, seed: int = 0) -> list[jaxsafe.Spec]:
    """``k`` different random specs over the gridworld labels (2..6 states incl. a sink)."""
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(k):
        n = 2 + i % 5
        names = [f"q{j}" for j in range(n - 1)] + ["violation"]
        trans = {}
        for j in range(n - 1):
            targets = rng.integers(0, n, size=len(LABELS))
            targets[0] = j  # "safe" keeps the state
            trans[names[j]] = {lab: names[t] for lab, t in zip(LABELS, targets, strict=True)}
        spec = {
            "name": f"random{i}",
            "alphabet": {"labels": list(LABELS)},
            "states": names,
            "initial": "q0",
            "violation": ["violation"],
            "accepting": names[:-1],
            "transitions": trans,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jaxsafe.SpecWarning)
            specs.append(jaxsafe.parse_spec(spec))
    return specs


def make_rollout(env, params, num_envs: int, num_steps: int, num_specs: int | None = None):
    """Jitted ``run(key)``: reset ``num_envs`` envs and scan ``num_steps`` random-action steps.

    With ``num_specs``, ``params`` is a stacked batch and the envs are vmapped per spec
    (``num_specs`` x ``num_envs``). Returns a checksum of rewards and observations so nothing is
    dead-code eliminated.
    """
    n_actions = env.num_actions

    def one_spec(key, p):
        keys = jax.random.split(key, num_envs)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, p)

        def body(carry, _):
            state, key = carry
            key, k_act, k_step = jax.random.split(key, 3)
            actions = jax.random.randint(k_act, (num_envs,), 0, n_actions)
            obs, state, reward, term, trunc, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_step, num_envs), state, actions, p
            )
            return (state, key), jnp.sum(reward) + jnp.sum(obs) + jnp.sum(term)

        _, sums = jax.lax.scan(body, (state, key), None, length=num_steps)
        return jnp.sum(sums)

    if num_specs is None:
        run = lambda key: one_spec(key, params)
    else:
        run = lambda key: jnp.sum(jax.vmap(one_spec)(jax.random.split(key, num_specs), params))
    key = jax.random.key(0)
    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(key).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(key))  # warm-up
    total = num_envs * num_steps * (num_specs or 1)
    return compiled, total, compile_s


def time_side_by_side(programs: dict, repeats: int) -> tuple[dict[str, float], float]:
    """Interleaved timing of two programs ``{first, second}``.

    Returns (median steps/s per program, ratio first/second). The ratio is the median over
    repeats of the paired ratio (both programs timed back to back), which cancels slow drift of
    a shared machine better than a ratio of two medians.
    """
    times = {name: [] for name in programs}
    for r in range(repeats):
        for name, (fn, _, _) in programs.items():
            key = jax.random.key(r + 1)
            t0 = time.perf_counter()
            jax.block_until_ready(fn(key))
            times[name].append(time.perf_counter() - t0)
    first, second = programs
    sps = {name: programs[name][1] / statistics.median(ts) for name, ts in times.items()}
    paired = [
        (programs[first][1] / a) / (programs[second][1] / b)
        for a, b in zip(times[first], times[second], strict=True)
    ]
    return sps, statistics.median(paired)


# ------------------------------------------------------------------------------ Python reference


class PyGrid:
    """Plain-Python slippery gridworld structured like the authors' code (``SlipperyGrid`` with a
    per-episode NumPy object array of label strings, ``random`` for slip and jitter)."""

    actions = ("right", "up", "left", "down", "stay")

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.state = list(START)
        self.labels = None

    def reset(self):
        u = self.rng.random()
        i = 1 if u < 0.05 else (-1 if u < 0.1 else 0)
        labels = np.full((SIZE, SIZE), "safe", dtype=object)
        for name, r, c, axis in OBJECTS:
            labels[r + i * (axis == 0), c + i * (axis == 1)] = name
        self.labels = labels
        self.state = list(START)

    def step(self, action: str) -> list[int]:
        if self.rng.random() < 0.05:
            action = self.rng.choice(self.actions)
        dr, dc = {"right": (0, 1), "up": (-1, 0), "left": (0, -1), "down": (1, 0)}.get(
            action, (0, 0)
        )
        r = min(max(self.state[0] + dr, 0), SIZE - 1)
        c = min(max(self.state[1] + dc, 0), SIZE - 1)
        self.state = [r, c]
        return self.state

    def label(self, state: list[int]) -> str:
        return self.labels[state[0], state[1]]


class PySG3:
    """SG3 as a hand-written automaton class with a ``step(label)`` if-chain (-1 = violation)."""

    def __init__(self):
        self.q = 0

    def reset(self):
        self.q = 0

    def step(self, label: str) -> int:
        haz = label in ("creeper", "basalt_lava")
        q = self.q
        if q == 0:
            q = -1 if haz else (1 if label == "wood" else 0)
        elif q == 1:
            q = -1 if haz else (2 if label == "work_bench" else 3 if label == "iron" else 1)
        elif q == 2:
            q = -1 if label == "creeper" else 2
        elif q == 3:
            q = -1 if haz else (4 if label == "smith_table" else 3)
        elif q == 4:
            q = -1 if label == "basalt_lava" else 4
        self.q = q
        return q


def python_reference(num_steps: int, seed: int = 0) -> float:
    """Steps/s of the plain-Python gridworld + SG3 loop (random policy, paper reward, reset on
    violation or after 1000 steps)."""
    rng = random.Random(seed)
    grid, dfa = PyGrid(rng), PySG3()
    grid.reset()
    total_reward, t = 0.0, 0
    t0 = time.perf_counter()
    for _ in range(num_steps):
        state = grid.step(rng.choice(PyGrid.actions))
        q = dfa.step(grid.label(state))
        total_reward += -0.1 if q == -1 else 0.1
        t += 1
        if q == -1 or t >= 1000:
            grid.reset()
            dfa.reset()
            t = 0
    elapsed = time.perf_counter() - t0
    assert np.isfinite(total_reward)
    return num_steps / elapsed


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=9, help="timed calls per program")
    ap.add_argument("--steps", type=int, default=400_000, help="env steps per timed call")
    ap.add_argument("--python-steps", type=int, default=100_000)
    ap.add_argument("--out", default=default_out("safe"), help="also write the JSON here")
    args = ap.parse_args(argv)

    grid = GridWorld()
    sg3 = jaxsafe.load_spec("sg3")
    safe_grid = jaxsafe.SafeguardWrapper(grid, GRIDWORLD_LABELLER, sg3)
    compile_s: dict[str, float] = {}
    steps_per_s: dict[str, dict[str, float] | float] = {
        "gridworld_bare": {},
        "gridworld_safeguard": {},
    }
    ratios: dict[str, dict[str, float] | float] = {"gridworld_safeguard_over_bare": {}}

    for n in (1, 64, 1024):
        t = max(args.steps // n, 200) if n > 1 else max(args.steps // 200, 1000)
        progs = {
            "safeguard": make_rollout(safe_grid, safe_grid.default_params, n, t),
            "bare": make_rollout(grid, grid.default_params, n, t),
        }
        compile_s.update({f"gridworld_{k}_{n}": v[2] for k, v in progs.items()})
        sps, ratio = time_side_by_side(progs, args.repeats)
        steps_per_s["gridworld_bare"][str(n)] = sps["bare"]
        steps_per_s["gridworld_safeguard"][str(n)] = sps["safeguard"]
        ratios["gridworld_safeguard_over_bare"][str(n)] = ratio

    cart = CartPole()
    safe_cart = jaxsafe.SafeguardWrapper(cart, CARTPOLE_LABELLER, jaxsafe.parse_spec(CARTPOLE_SPEC))
    t = max(args.steps // 1024, 200)
    progs = {
        "safeguard": make_rollout(safe_cart, safe_cart.default_params, 1024, t),
        "bare": make_rollout(cart, cart.default_params, 1024, t),
    }
    compile_s.update({f"cartpole_{k}_1024": v[2] for k, v in progs.items()})
    sps, ratio = time_side_by_side(progs, args.repeats)
    steps_per_s["cartpole_bare_1024"] = sps["bare"]
    steps_per_s["cartpole_safeguard_1024"] = sps["safeguard"]
    ratios["cartpole_safeguard_over_bare"] = ratio

    specs = random_specs(16)
    multi = jaxsafe.SafeguardWrapper(
        grid, GRIDWORLD_LABELLER, specs[0], num_states=max(s.num_states for s in specs)
    )
    progs = {
        "multi16": make_rollout(multi, multi.make_params(specs), 64, t, num_specs=16),
        "single": make_rollout(multi, multi.make_params(sg3), 1024, t),
    }
    compile_s.update({f"{k}_1024": v[2] for k, v in progs.items()})
    sps, ratio = time_side_by_side(progs, args.repeats)
    steps_per_s["single_spec_1024"] = sps["single"]
    steps_per_s["multispec16_1024"] = sps["multi16"]
    ratios["multispec16_over_single"] = ratio

    py = python_reference(args.python_steps)
    steps_per_s["python_reference"] = py
    ratios["speedup_vs_python"] = steps_per_s["gridworld_safeguard"]["1024"] / py

    result = {
        **ratios,
        "steps_per_second": steps_per_s,
        "compile_seconds": compile_s,
        "config": {"repeats": args.repeats, "steps_per_call": args.steps},
        "notes": (
            "python_reference is env + safeguard only (no learning); the authors' whole "
            "tabular training loop ran at 1.1e4-1.8e4 steps/s on this class of CPU"
        ),
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
    }
    emit(_round(result), args.out)
    return result


def _round(x):
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, float):
        return float(f"{x:.4g}")
    return x


if __name__ == "__main__":
    main()
