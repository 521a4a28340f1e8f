"""Safeguard and tabular-protocol throughput (JSON on stdout): ``python -m experiments.bench.safe``.

Every program is timed side by side with its comparison through
:mod:`experiments.bench.timing` (compile excluded; each ratio is the spread, median/min/max, of
the per-repeat ratios of programs timed back to back); progress goes to stderr. Environment
rollouts are the library's own :func:`jaxsafe.rollout.rollout` (random actions, gymnax
auto-reset).

Keys (throughput ratios, first / second, each ``{"median", "min", "max"}``):
  gridworld_safeguard_over_bare        gridworld + SG3 safeguard / bare gridworld, per env count
  cartpole_safeguard_over_bare         gymnax CartPole + a 3-state spec / bare CartPole (1024 envs)
  multispec16_over_single              16 different specs x 64 envs / SG3 x 1024 envs
  env_automaton_speedup_vs_python      gridworld + SG3 at 1024 envs / a plain-Python loop of the
                                       same env + automaton only (random actions, no agent)
  tabular_protocol_speedup_vs_authors  the whole 5000-episode faithful Q-learning protocol for 5
                                       seeds vmapped (env steps/s) / a plain-Python loop of the
                                       authors' training step (slip grid step, label lookup,
                                       automaton step, epsilon-greedy, Q and U updates on dict
                                       tables keyed by ``str([row, col, q])``, the path), run for
                                       fewer episodes; it runs as fast as the authors' own
                                       ``minecraft.py`` on this CPU (both ~3e4 steps/s, idle).
                                       Run in a subprocess with XLA:CPU's small-loop option on
                                       (:mod:`jaxcommon.xla_cpu`), so the step loop is one kernel
  tabular_protocol_speedup_vs_lean_python  the same protocol / the loop without what does not
                                       change the Q-learner (no U table, path, NumPy reductions)
  tabular_protocol_default_xla         both ratios again in this process, XLA's default options
                                       (the table update is then a scatter)
  ppo_*                                merged from :mod:`experiments.bench.safe_ppo` when present
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import operator
import os
import random
import subprocess
import sys
import time
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments.classic_control import CartPole

import jaxsafe
from experiments.bench import timing
from experiments.bench.report import default_out, emit
from jaxcommon import xla_cpu
from jaxsafe.agents import QLearningConfig, make_qlearning, stage_episodes
from jaxsafe.envs import GRIDWORLD_LABELLER, LABELS, GridWorld
from jaxsafe.envs.gridworld import OBJECTS, SIZE, START
from jaxsafe.rollout import random_policy, rollout

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
    """Compiled ``() -> checksum`` of a random-action :func:`~jaxsafe.rollout.rollout`.

    With ``num_specs``, ``params`` is a stacked batch and the rollout is vmapped over specs
    (``num_specs`` x ``num_envs``). Returns ``(call, env steps per call, compile seconds)``.
    """
    policy = random_policy(env.num_actions)

    def one_spec(key, p):
        _, traj = rollout(env, p, policy, key, num_envs, num_steps)
        return jnp.sum(traj.reward) + jnp.sum(traj.obs) + jnp.sum(traj.terminated)

    if num_specs is None:
        run = lambda key: one_spec(key, params)
    else:
        run = lambda key: jnp.sum(jax.vmap(one_spec)(jax.random.split(key, num_specs), params))
    key = jax.random.key(0)
    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(key).compile()
    compile_s = time.perf_counter() - t0
    return (lambda: compiled(key)), num_envs * num_steps * (num_specs or 1), compile_s


def compare_all(programs: dict, repeats: int, first: str, others) -> tuple[dict, dict]:
    """``({other: ratio of throughputs first/other}, steps/s per program)``, all with spread;
    every program of ``programs`` (``name -> (fn, items per call)``) timed side by side."""
    times = timing.side_by_side({k: v[0] for k, v in programs.items()}, repeats)
    items = {k: v[1] for k, v in programs.items()}
    rate = {k: items[k] / times[k] for k in programs}
    ratios = {other: timing.spread(rate[first] / rate[other]) for other in others}
    return ratios, timing.rates(times, items)


def compare(programs: dict, repeats: int, first: str, second: str) -> tuple[dict, dict]:
    """``(ratio of throughputs first/second, steps/s per program)``, both with spread."""
    ratios, sps = compare_all(programs, repeats, first, [second])
    return ratios[second], sps


# ------------------------------------------------------------------------------ Python references


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
    """The plain-Python gridworld + SG3 loop (random policy, paper reward, reset on violation or
    after 1000 steps); returns the total reward (timed by the caller)."""
    rng = random.Random(seed)
    grid, dfa = PyGrid(rng), PySG3()
    grid.reset()
    total_reward, t = 0.0, 0
    for _ in range(num_steps):
        state = grid.step(rng.choice(PyGrid.actions))
        q = dfa.step(grid.label(state))
        total_reward += -0.1 if q == -1 else 0.1
        t += 1
        if q == -1 or t >= 1000:
            grid.reset()
            dfa.reset()
            t = 0
    return total_reward


class PyDFA:
    """A safeguard as the authors write one: ``step(label)`` on a string label, -1 = violation."""

    def __init__(self, spec: jaxsafe.Spec):
        viol = np.asarray(spec.violation)
        self.next = {
            (q, name): (-1 if viol[spec.delta[q, i]] else int(spec.delta[q, i]))
            for q in range(spec.num_states)
            for i, name in enumerate(LABELS)
        }
        self.automaton_state = 0

    def reset(self):
        self.automaton_state = 0

    def step(self, label: str) -> int:
        self.automaton_state = self.next[(self.automaton_state, label)]
        return self.automaton_state


class AuthorsGrid(PyGrid):
    """:class:`PyGrid` with the authors' ``SlipperyGrid.step`` shape: sink-state check, slip,
    an if-chain over action names with ``map(add, ...)``, boundary clamps, obstacle check."""

    sink_states: list = []

    def step(self, action: str) -> list[int]:
        if self.state in self.sink_states:
            return self.state
        if self.rng.random() < 0.05:
            action = self.rng.choice(self.actions)
        if action == "right":
            nxt = list(map(operator.add, self.state, [0, 1]))
        elif action == "up":
            nxt = list(map(operator.add, self.state, [-1, 0]))
        elif action == "left":
            nxt = list(map(operator.add, self.state, [0, -1]))
        elif action == "down":
            nxt = list(map(operator.add, self.state, [1, 0]))
        else:
            nxt = self.state
        if nxt[0] == SIZE:
            nxt[0] = SIZE - 1
        if nxt[1] == SIZE:
            nxt[1] = SIZE - 1
        if -1 in nxt:
            nxt[nxt.index(-1)] = 0
        if "obstacle" in self.label(nxt):
            nxt = self.state
        self.state = nxt
        return nxt


class AuthorsDFA(PyDFA):
    """:class:`PyDFA` with the authors' ``accepting(q)`` flag (1 accepting, -1 violation)."""

    def __init__(self, spec: jaxsafe.Spec):
        super().__init__(spec)
        self.accepting_set = [int(q) for q in np.flatnonzero(np.asarray(spec.accepting))]

    def accepting(self, q: int) -> int:
        if q in self.accepting_set:
            return 1
        return -1 if q == -1 else 0


def authors_training_loop(
    num_episodes: int, seed: int = 0, max_steps: int = 1000, *, lean: bool = False
) -> int:
    """The authors' training step in plain Python (``minecraft.py``): returns env steps run.

    Each step, as theirs: greedy action with random tie-breaks over
    ``np.where(Qs == np.max(Qs))``, the same for their second table ``U`` over
    ``np.min(Us)``, slip grid step (:class:`AuthorsGrid`), label lookup, automaton step and
    ``accepting`` flag (:class:`AuthorsDFA`), the new-state initialisation loop over earlier
    tasks, the Q update bootstrapped with ``np.max(Qs_prime)`` and the U update with
    ``np.min(Us_prime)``, the path appended; dict-of-dicts tables keyed by
    ``str([row, col, q])``; stages ``int(episode / (E // 3))`` over SG0..SG3.

    ``lean=True`` drops what does not change the Q-learner (the U table, the path, NumPy
    reductions over five floats, the flag and the sink/obstacle checks): a tighter Python loop,
    reported beside the faithful one.
    """
    rng = random.Random(seed)
    random.seed(seed)
    grid = PyGrid(rng) if lean else AuthorsGrid(rng)
    dfa_cls = PyDFA if lean else AuthorsDFA
    dfas = [dfa_cls(jaxsafe.load_spec(f"sg{i}")) for i in range(4)]
    actions = PyGrid.actions
    q_table = {str([*START, 0]): {a: 0.0 for a in actions}}
    u_table = {str([*START, 0]): {a: 0.0 for a in actions}}
    divisor = max(num_episodes // 3, 1)
    steps = 0
    for episode in range(num_episodes):
        task = min(episode // divisor, 3)
        dfa = dfas[task]
        grid.reset()
        dfa.reset()
        current = [*grid.state, dfa.automaton_state]
        path = [current]
        t = 0
        while t < max_steps and dfa.automaton_state != -1:
            t += 1
            qs = [q_table[str(current)][a] for a in actions]
            greedy = actions[random.choice(np.where(qs == np.max(qs))[0])]
            if not lean:
                us = [u_table[str(current)][a] for a in actions]
                u_greedy = actions[random.choice(np.where(us == np.min(us))[0])]
            moved = grid.step(rng.choice(actions) if rng.random() < 0.1 else greedy)
            q_next = dfa.step(grid.label(moved))
            nxt = [*moved, q_next]
            new = str(nxt) not in q_table
            if new:
                q_table[str(nxt)] = {a: 0.0 for a in actions}
                counter = 0
                for i in range(task):
                    if str([*moved, i]) in q_table:
                        counter += 1
                        for a in actions:
                            q_table[str(nxt)][a] += q_table[str([*moved, i])][a]
                if counter:
                    for a in actions:
                        q_table[str(nxt)][a] /= counter
            old = q_table[str(current)][greedy]
            if lean:
                reward = -0.1 if q_next == -1 else 0.1
                boot = max(q_table[str(nxt)][a] for a in actions)
                if new:  # their bootstrap maxes 5 zeros and the 5 initialised values
                    boot = max(boot, 0.0)
                q_table[str(current)][greedy] = 0.1 * old + 0.9 * (reward + 0.9 * boot)
            else:
                qs_prime = [q_table[str(nxt)][a] for a in actions]
                if new:
                    qs_prime = [0.0] * len(actions) + qs_prime
                if str(nxt) not in u_table:
                    u_table[str(nxt)] = {a: 0.0 for a in actions}
                us_prime = [u_table[str(nxt)][a] for a in actions]
                flag = dfa.accepting(q_next)
                reward = 0.1 if flag > 0 else (-0.1 if flag == -1 else 0.0)
                q_target = reward + 0.9 * np.max(qs_prime)
                q_table[str(current)][greedy] = 0.1 * old + 0.9 * q_target
                u_target = reward + 0.9 * np.min(us_prime)
                u_table[str(current)][u_greedy] = (
                    0.1 * u_table[str(current)][u_greedy] + 0.9 * u_target
                )
            current = nxt
            path.append(current)
        steps += t
    return steps


def tabular_protocol(episodes: int, seeds: int, max_steps: int, python_episodes: int, repeats: int):
    """JAX faithful protocol (vmapped seeds) vs the plain-Python loops, steps/s side by side.

    Returns ``({"authors": ratio, "lean": ratio}, steps/s per program, compile seconds)``; each
    ratio is JAX over one Python loop (:func:`authors_training_loop`, faithful or ``lean``)."""
    specs = [jaxsafe.load_spec(f"sg{i}") for i in range(4)]
    config = QLearningConfig(faithful=True, max_steps=max_steps)
    learner = make_qlearning(specs, stage_episodes(episodes, 4, faithful=True), config)
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    timing.progress(f"tabular protocol: compiling ({episodes} episodes x {seeds} seeds)")
    t0 = time.perf_counter()
    learner.lower_stage(learner.init(keys)).compile()
    compile_s = time.perf_counter() - t0
    state = learner.run(learner.init(keys))
    jax_steps = int(np.asarray(state.ep_steps).sum())
    loops = {
        name: partial(authors_training_loop, python_episodes, max_steps=max_steps, lean=lean)
        for name, lean in (("python", False), ("python_lean", True))
    }
    py_steps = {name: loop() for name, loop in loops.items()}
    timing.progress(
        f"tabular protocol: timing {jax_steps} JAX steps vs {py_steps} Python steps x {repeats}"
    )
    programs = {"jax": (lambda: learner.run(learner.init(keys)).history, jax_steps)}
    programs.update({name: (loops[name], py_steps[name]) for name in loops})
    ratios, sps = compare_all(programs, repeats, "jax", ["python", "python_lean"])
    return {"authors": ratios["python"], "lean": ratios["python_lean"]}, sps, compile_s


PROTOCOL_ARGS = ("protocol_episodes", "protocol_seeds", "protocol_max_steps", "python_episodes",
                 "protocol_repeats")  # fmt: skip


def _protocol_args(args) -> list:
    return [getattr(args, name) for name in PROTOCOL_ARGS]


def _protocol_keys(ratios: dict, rate: dict) -> dict:
    return {
        "tabular_protocol_speedup_vs_authors": ratios["authors"],
        "tabular_protocol_speedup_vs_lean_python": ratios["lean"],
        "steps_per_second": {f"tabular_protocol_{k}": v for k, v in rate.items()},
    }


def _protocol_small_loops(args) -> tuple[dict, float]:
    """:func:`tabular_protocol` in a child process with XLA:CPU's small-loop option on."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_cpu.with_small_loops())
    timing.progress(f"tabular protocol in a subprocess, XLA_FLAGS={env['XLA_FLAGS']!r}")
    cmd = [sys.executable, "-m", "experiments.bench.safe", "--protocol-only", "--out", ""]
    for name in PROTOCOL_ARGS:
        cmd += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True)
    child = json.loads(done.stdout.strip().splitlines()[-1])
    return child["keys"], child["compile_s"]


# ------------------------------------------------------------------------------ main


def _ppo_keys(quick: bool) -> dict:
    if importlib.util.find_spec("experiments.bench.safe_ppo") is None:
        return {}
    from experiments.bench import safe_ppo  # noqa: PLC0415

    timing.progress("PPO keys (experiments.bench.safe_ppo)")
    return safe_ppo.run(quick=quick)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed calls per program")
    ap.add_argument("--steps", type=int, default=400_000, help="env steps per timed call")
    ap.add_argument("--python-steps", type=int, default=100_000)
    ap.add_argument("--protocol-episodes", type=int, default=5000)
    ap.add_argument("--protocol-seeds", type=int, default=5)
    ap.add_argument("--protocol-max-steps", type=int, default=1000)
    ap.add_argument("--python-episodes", type=int, default=40)
    ap.add_argument("--protocol-repeats", type=int, default=2)
    ap.add_argument("--ppo", choices=("full", "quick", "off"), default="full")
    ap.add_argument("--protocol-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=default_out("safe"), help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.protocol_only:  # the child of _protocol_small_loops: one JSON line
        ratios, rate, compile_protocol = tabular_protocol(*_protocol_args(args))
        out = {"keys": _protocol_keys(ratios, rate), "compile_s": compile_protocol}
        print(json.dumps(out), flush=True)
        return out

    grid = GridWorld()
    sg3 = jaxsafe.load_spec("sg3")
    safe_grid = jaxsafe.SafeguardWrapper(grid, GRIDWORLD_LABELLER, sg3)
    compile_s: dict[str, float] = {}
    sps: dict[str, dict] = {}
    result: dict[str, dict] = {"gridworld_safeguard_over_bare": {}}

    for n in (1, 64, 1024):
        t = max(args.steps // n, 200) if n > 1 else max(args.steps // 200, 1000)
        timing.progress(f"gridworld safeguard vs bare, {n} envs x {t} steps")
        progs = {
            "safeguard": make_rollout(safe_grid, safe_grid.default_params, n, t),
            "bare": make_rollout(grid, grid.default_params, n, t),
        }
        compile_s.update({f"gridworld_{k}_{n}": v[2] for k, v in progs.items()})
        ratio, rate = compare(progs, args.repeats, "safeguard", "bare")
        result["gridworld_safeguard_over_bare"][str(n)] = ratio
        sps.update({f"gridworld_{k}_{n}": v for k, v in rate.items()})

    cart = CartPole()
    safe_cart = jaxsafe.SafeguardWrapper(cart, CARTPOLE_LABELLER, jaxsafe.parse_spec(CARTPOLE_SPEC))
    t = max(args.steps // 1024, 200)
    timing.progress("cartpole safeguard vs bare, 1024 envs")
    progs = {
        "safeguard": make_rollout(safe_cart, safe_cart.default_params, 1024, t),
        "bare": make_rollout(cart, cart.default_params, 1024, t),
    }
    compile_s.update({f"cartpole_{k}_1024": v[2] for k, v in progs.items()})
    result["cartpole_safeguard_over_bare"], rate = compare(progs, args.repeats, "safeguard", "bare")
    sps.update({f"cartpole_{k}_1024": v for k, v in rate.items()})

    specs = random_specs(16)
    multi = jaxsafe.SafeguardWrapper(
        grid, GRIDWORLD_LABELLER, specs[0], num_states=max(s.num_states for s in specs)
    )
    timing.progress("16 specs x 64 envs vs one spec x 1024 envs")
    progs = {
        "multi16": make_rollout(multi, multi.make_params(specs), 64, t, num_specs=16),
        "single": make_rollout(multi, multi.make_params(sg3), 1024, t),
    }
    compile_s.update({f"{k}_1024": v[2] for k, v in progs.items()})
    result["multispec16_over_single"], rate = compare(progs, args.repeats, "multi16", "single")
    sps.update({f"spec_{k}_1024": v for k, v in rate.items()})

    timing.progress(f"env + automaton vs plain Python ({args.python_steps} steps)")
    jax_env = make_rollout(safe_grid, safe_grid.default_params, 1024, t)
    progs = {
        "jax": jax_env,
        "python": (lambda: python_reference(args.python_steps), args.python_steps),
    }
    result["env_automaton_speedup_vs_python"], rate = compare(
        {k: v[:2] for k, v in progs.items()}, args.repeats, "jax", "python"
    )
    sps.update({f"env_automaton_{k}": v for k, v in rate.items()})

    keys, compile_s["tabular_protocol"] = _protocol_small_loops(args)
    sps.update(keys.pop("steps_per_second"))
    result.update(keys)
    ratios, rate, compile_s["tabular_protocol_default_xla"] = tabular_protocol(
        *_protocol_args(args)
    )
    default = _protocol_keys(ratios, rate)
    sps.update({f"{k}_default_xla": v for k, v in default.pop("steps_per_second").items()})
    result["tabular_protocol_default_xla"] = default

    ppo = {} if args.ppo == "off" else _ppo_keys(quick=args.ppo == "quick")
    out = {
        **result,
        **ppo,
        "steps_per_second": sps,
        "compile_seconds": {k: round(v, 3) for k, v in compile_s.items()},
        "config": {
            "repeats": args.repeats,
            "steps_per_call": args.steps,
            "protocol_episodes": args.protocol_episodes,
            "protocol_seeds": args.protocol_seeds,
            "python_episodes": args.python_episodes,
        },
        "notes": (
            "env_automaton_speedup_vs_python compares env + safeguard only (no learning); "
            "tabular_protocol_speedup_vs_authors compares whole Q-learning training loops"
        ),
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
    }
    emit(out, args.out)
    return out


if __name__ == "__main__":
    main()
