"""PPO with progressive safeguards against its baselines, on the gridworld and Craftax-Classic.

``run_ppo_comparison(workdir, full=False)`` is called by ``experiments/reproduce_safe.py``. Every
method is one :class:`jaxsafe.agents.ppo.Plan` of the *same* compiled program, so all methods x
all seeds run as one ``vmap`` (methods) of a ``vmap`` (seeds) of one jitted ``train``:

=============== ======================================================================
progressive     SG0 -> SG1 -> SG2 -> SG3, paper reward, policy + optimiser carried over
zero_shot       SG3 from the start (paper reward), same total steps
no_safeguard    SG3 only counts: no safe-step reward, no termination (``mode="cost"``)
intrinsic_fear  zero_shot + the learned danger penalty (Lipton et al.)
ppo_lagrangian  no_safeguard + a multiplier on the wrapper's cost channel (cost budget)
=============== ======================================================================

Every method also gets the same task reward (+``TASK_REWARD`` the first time an episode enters a
goal state of SG3: wood then work bench, or wood, iron, smith table) from the reference
automaton; without it the no-safeguard baseline would have nothing to learn. "train violations"
counts what the trained spec flags (SG0 flags every hazard, so the curriculum's early stages count
more than SG3 would); "SG3-violations" counts violations of the final spec SG3 for every method
(the automaton restarts after a violation that does not end the episode). Evaluation: the
greedy policy under SG3 (paper mode) on ``eval_envs`` fresh episodes; success = no violation
(the authors' definition), task completion = an SG3 goal state reached.

Craftax-Classic (symbolic): ``craftax_strict`` (lava or zombie contact) -> ``craftax_armed``
against zero-shot ``craftax_armed`` and no safeguard, 3 seeds (5 under ``full``), environments
restarted from a reset pool (:mod:`jaxsafe.resets`: 2 N world generations per update instead of
one per env per step). The quick run has no greedy evaluation (it would compile Craftax's reset
and step once more): its success numbers are the training episodes' (sampled policy) of the
last 5 updates; ``full`` evaluates greedily.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm

import jaxsafe
from jaxsafe.agents import ppo

__all__ = ["METHODS", "gridworld_plans", "run_ppo_comparison"]

METHODS = ("progressive", "zero_shot", "no_safeguard", "intrinsic_fear", "ppo_lagrangian")
TASK_REWARD = 5.0  # ~ half the discounted survival reward of a 200-step episode
FEAR_COEF = 0.2
COST_BUDGET = 1.0  # violations per episode allowed to the Lagrangian baseline
LAMBDA_LR = 0.05

CRAFTAX_STRICT = {
    "name": "craftax_strict",
    "description": "Stage 0: lava or zombie contact always violate.",
    "alphabet": {"propositions": ["near_lava", "near_zombie", "has_sword", "low_health"]},
    "states": ["ok", "violation"],
    "initial": "ok",
    "violation": ["violation"],
    "accepting": ["ok"],
    "transitions": {"ok": {"near_lava or near_zombie": "violation", "else": "ok"}},
}


def _chain_spec(name: str, steps: list[str]) -> dict:
    """``q0 -steps[0]-> q1 -steps[1]-> ...``; lava or creeper violate before the last state."""
    labels = ["safe", "basalt_lava", "creeper", "wood", "iron", "work_bench", "smith_table",
              "diamond"]  # fmt: skip
    states = [f"q{i}" for i in range(len(steps) + 1)]
    trans = {
        q: {steps[i]: states[i + 1], "basalt_lava or creeper": "violation", "else": q}
        for i, q in enumerate(states[:-1])
    }
    trans[states[-1]] = {"basalt_lava or creeper": "violation", "else": states[-1]}
    return {"name": name, "alphabet": {"labels": labels}, "states": [*states, "violation"],
            "initial": "q0", "violation": ["violation"], "accepting": states,
            "transitions": trans}  # fmt: skip


ADAPT_TRAIN = [("iron", ["iron"]), ("bench_smith", ["work_bench", "smith_table"]),
               ("wood_bench", ["wood", "work_bench"]), ("smith", ["smith_table"])]  # fmt: skip
ADAPT_HELDOUT = ("iron_bench", ["iron", "work_bench"])


def _adaptation(full: bool) -> dict[str, Any]:
    """Pre-train on ADAPT_TRAIN, adapt to the held-out ADAPT_HELDOUT vs scratch (gridworld)."""
    from jaxsafe.agents import adaptation
    from jaxsafe.envs import GRIDWORLD_LABELLER, GridParams, GridWorld

    train_specs = [jaxsafe.parse_spec(_chain_spec(n, s)) for n, s in ADAPT_TRAIN]
    held = jaxsafe.parse_spec(_chain_spec(*ADAPT_HELDOUT))
    env = jaxsafe.SafeguardWrapper(GridWorld(), GRIDWORLD_LABELLER, held, num_states=4)
    c = ppo.default_config()
    c.num_envs, c.num_steps, c.update_epochs, c.num_minibatches = 16, 64, 4, 4
    c.lr, c.anneal_lr, c.eval_every, c.eval_envs, c.eval_steps = 1e-3, False, 5, 32, 100
    c.stage_steps = ((60 if full else 20) * c.num_envs * c.num_steps,)
    seeds = 5 if full else 3
    keys = jax.random.split(jax.random.key(1), seeds)
    t0, c0 = time.perf_counter(), time.process_time()
    with tqdm(total=1, desc="gridworld adaptation", unit="run") as bar:
        out = adaptation.run_adaptation(
            c, env, train_specs, held, keys, env_params=GridParams(max_steps_in_episode=100),
            target_task=0.8, target_violation=0.1, task_reward=TASK_REWARD,
        )  # fmt: skip
        bar.update()
    res = {}
    for k in ("adapt", "scratch"):
        t = out[f"{k}_to_target"]
        res[k] = {
            "reached": t["reached"].tolist(),
            "samples_to_target": t["samples"].tolist(),
            "violations_to_target": t["violations"].tolist(),
            "final_task_completion_pct": (100 * t["final_task_completion"]).tolist(),
            "final_violation_pct": (100 * t["final_violation"]).tolist(),
            "total_violations": out[k]["violations"][:, -1].tolist(),
        }
    rows = [
        f"**Adaptation to held-out spec `{ADAPT_HELDOUT[0]}` (iron then work bench)** after "
        f"pre-training on {[n for n, _ in ADAPT_TRAIN]}; target: greedy task completion >= 80% "
        f"and violations <= 10%; {seeds} seeds, {int(out['adapt']['steps'][0, -1])} steps each",
        "",
        "| start | reached target | samples to target | violations to target | "
        "final task % | final violation % | all violations |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, r in res.items():
        reached = np.asarray(r["reached"])
        s_txt = v_txt = "never"
        if reached.any():  # mean ± std over the seeds that reached the target
            s_txt = _ms(np.asarray(r["samples_to_target"])[reached], digits=0)
            v_txt = _ms(np.asarray(r["violations_to_target"])[reached], digits=0)
        rows.append(
            f"| {'pre-trained' if k == 'adapt' else 'scratch'} | {sum(reached)}/{seeds} | {s_txt} "
            f"| {v_txt} | {_ms(r['final_task_completion_pct'])} | "
            f"{_ms(r['final_violation_pct'])} | {_ms(r['total_violations'], digits=0)} |"
        )
    timing = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
    return {"results": res, "table_md": "\n".join(rows) + "\n", "timing": timing}


def _grid_config(full: bool):
    c = ppo.default_config()
    c.num_envs, c.num_steps = 16, 128
    c.update_epochs, c.num_minibatches = 4, 4
    c.lr, c.anneal_lr = 1e-3, False
    c.eval_every, c.eval_envs, c.eval_steps = 5, 64 if full else 32, 200
    per_stage = 40 if full else 10  # updates of 2048 steps
    c.stage_steps = (per_stage * c.num_envs * c.num_steps,) * 4
    return c


def gridworld_plans(config, env, env_params) -> dict[str, ppo.Plan]:
    """The five methods' plans over SG0..SG3 (all stacked to four stages)."""
    specs = [jaxsafe.load_spec(f"sg{i}") for i in range(4)]
    paper = [env.make_params(s, env_params=env_params) for s in specs]
    cost = env.make_params(specs[3], env_params=env_params, mode="cost")
    final, ref = paper[3], paper[3].automaton
    common = dict(task_reward=TASK_REWARD)
    return {
        "progressive": ppo.make_plan(config, paper, final, ref, **common),
        "zero_shot": ppo.make_plan(config, [final] * 4, final, ref, **common),
        "no_safeguard": ppo.make_plan(config, [cost] * 4, final, ref, **common),
        "intrinsic_fear": ppo.make_plan(
            config, [final] * 4, final, ref, fear_coef=FEAR_COEF, **common
        ),
        "ppo_lagrangian": ppo.make_plan(
            config,
            [cost] * 4,
            final,
            ref,
            lagrangian_lr=LAMBDA_LR,
            cost_budget=COST_BUDGET,
            **common,
        ),  # fmt: skip
    }


def _run_methods(config, env, plans: dict[str, ppo.Plan], seeds: int, desc: str):
    """One jit: vmap over methods of vmap over seeds. Returns ({method: metrics}, seconds)."""
    names = list(plans)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[plans[k] for k in names])
    train = ppo.make_train(config, env)
    fn = jax.jit(jax.vmap(jax.vmap(train, in_axes=(0, None)), in_axes=(None, 0)))
    keys = jax.random.split(jax.random.key(0), seeds)
    with tqdm(total=2, desc=desc, unit="phase") as bar:
        t0, c0 = time.perf_counter(), time.process_time()
        compiled = fn.lower(keys, stacked).compile()
        bar.update()
        t1, c1 = time.perf_counter(), time.process_time()
        _, metrics = compiled(keys, stacked)
        metrics = jax.tree.map(np.asarray, jax.block_until_ready(metrics))
        bar.update()
    t2, c2 = time.perf_counter(), time.process_time()
    out = {k: {m: v[i] for m, v in metrics.items()} for i, k in enumerate(names)}
    # wall seconds and this process's CPU seconds (a shared machine inflates the wall ones)
    return out, {"compile_s": t1 - t0, "run_s": t2 - t1, "compile_cpu_s": c1 - c0,
                 "run_cpu_s": c2 - c1}  # fmt: skip


def _ms(x: np.ndarray, scale: float = 1.0, digits: int = 1) -> str:
    x = np.asarray(x, np.float64) * scale
    return f"{np.nanmean(x):.{digits}f} ± {np.nanstd(x):.{digits}f}"


def _summary(m: dict) -> dict[str, Any]:
    """Per-seed end-of-training numbers of one method. Without greedy evaluations (Craftax) the
    ``eval_*`` entries are the training episodes of the last 5 updates (sampled policy)."""
    if "eval_success" in m:
        succ, task, ret = (m[k][:, -1] for k in ("eval_success", "eval_task_completion",
                                                 "eval_return"))  # fmt: skip
    else:
        last = lambda k: np.nanmean(m[k][:, -5:], axis=1)  # noqa: E731
        succ, task, ret = last("final_success"), last("task_completion"), last("return")
    return {
        "train_violations": m["violations"][:, -1].tolist(),
        "train_sg3_violations": m["ref_violations"][:, -1].tolist(),
        "eval_success_pct": (100 * succ).tolist(),
        "eval_violation_pct": (100 * (1 - succ)).tolist(),
        "eval_task_completion_pct": (100 * task).tolist(),
        "eval_return": ret.tolist(),
        "value_start": m["value_start"][:, -1].tolist(),
        "env_steps": float(m["steps"][0, -1]),
        "greedy_eval": "eval_success" in m,
    }


def _table(results: dict[str, dict], title: str) -> str:
    head = (
        f"**{title}** (mean ± std over seeds)\n\n"
        "| method | train violations | train SG3-violations | eval success % | "
        "eval task completion % | eval return | V(s0) |\n|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for k, s in results.items():
        rows.append(
            f"| {k} | {_ms(s['train_violations'], digits=0)} | "
            f"{_ms(s['train_sg3_violations'], digits=0)} | {_ms(s['eval_success_pct'])} | "
            f"{_ms(s['eval_task_completion_pct'])} | {_ms(s['eval_return'], digits=2)} | "
            f"{_ms(s['value_start'], digits=2)} |"
        )
    return head + "\n".join(rows) + "\n"


def _stage_table(m: dict, stage_end: np.ndarray, eval_every: int) -> str:
    rows = ["| stage | env steps | violations in stage | eval success % | eval task % |",
            "|---|---|---|---|---|"]  # fmt: skip
    prev = np.zeros(m["violations"].shape[0])
    for s, end in enumerate(stage_end):
        v = m["violations"][:, end - 1]
        e = end // eval_every - 1
        rows.append(
            f"| SG{s} | {int(m['steps'][0, end - 1])} | {_ms(v - prev, digits=0)} | "
            f"{_ms(m['eval_success'][:, e], 100)} | {_ms(m['eval_task_completion'][:, e], 100)} |"
        )
        prev = v
    return "\n".join(rows) + "\n"


def _plot(metrics: dict[str, dict], path: pathlib.Path, eval_every: int, title: str) -> None:
    greedy = all("eval_success" in m for m in metrics.values())
    fig = Figure(figsize=(15, 4.2))
    axes = fig.subplots(1, 3)
    for name, m in metrics.items():
        steps = m["steps"][0]
        for ax, key in ((axes[0], "violations"), (axes[1], "ref_violations")):
            mu, sd = m[key].mean(0), m[key].std(0)
            ax.plot(steps, mu, label=name)
            ax.fill_between(steps, mu - sd, mu + sd, alpha=0.2)
        if "eval_success" in m:
            es, succ = steps[eval_every - 1 :: eval_every], m["eval_success"]
        else:  # training episodes (sampled policy), final spec
            es, succ = steps, m["final_success"]
        mu, sd = np.nanmean(succ, 0) * 100, np.nanstd(succ, 0) * 100
        axes[2].plot(es, mu, label=name)
        axes[2].fill_between(es, mu - sd, mu + sd, alpha=0.2)
    axes[0].set(title="cumulative violations (trained spec)", xlabel="env steps")
    axes[1].set(title="cumulative violations of the final spec", xlabel="env steps")
    what = "greedy eval" if greedy else "training episodes'"
    axes[2].set(title=f"{what} success % (final spec)", xlabel="env steps", ylim=(-2, 102))
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _plot_task(metrics: dict[str, dict], path: pathlib.Path, eval_every: int, title: str) -> None:
    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    for name, m in metrics.items():
        es = m["steps"][0][eval_every - 1 :: eval_every]
        mu, sd = m["eval_task_completion"].mean(0) * 100, m["eval_task_completion"].std(0) * 100
        ax.plot(es, mu, label=name)
        ax.fill_between(es, mu - sd, mu + sd, alpha=0.2)
    ax.set(title=title, xlabel="env steps", ylabel="task completion %", ylim=(-2, 102))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _verdict(res: dict[str, dict]) -> str:
    """Plain statement of where progressive beat each baseline and where it did not."""
    p = res["progressive"]
    pv, ps = np.mean(p["train_sg3_violations"]), np.mean(p["eval_success_pct"])
    pt = np.mean(p["eval_task_completion_pct"])
    beat, lost = [], []
    for k, s in res.items():
        if k == "progressive":
            continue
        v, su, t = (np.mean(s[x]) for x in ("train_sg3_violations", "eval_success_pct",
                                              "eval_task_completion_pct"))  # fmt: skip
        (beat if pv < v else lost).append(f"{k} ({pv:.0f} vs {v:.0f} SG3-violations)")
        if ps + 1e-9 < su:
            lost.append(f"{k} on final success ({ps:.0f}% vs {su:.0f}%)")
        if pt + 1e-9 < t:
            lost.append(f"{k} on task completion ({pt:.0f}% vs {t:.0f}%)")
    text = "fewer training violations than " + (", ".join(beat) if beat else "no baseline")
    if lost:
        text += "; not better than " + ", ".join(lost)
    return text


def _craftax(workdir: pathlib.Path, full: bool) -> dict[str, Any]:
    from jaxsafe.envs import CRAFTAX_LABELLER, make_craftax_classic

    base = make_craftax_classic(symbolic=True)
    armed = jaxsafe.load_spec("craftax_armed")
    strict = jaxsafe.parse_spec(CRAFTAX_STRICT)
    env = jaxsafe.SafeguardWrapper(base, CRAFTAX_LABELLER, armed, mode="paper", num_states=3)
    c = ppo.default_config()
    c.num_envs, c.num_steps = (32, 64) if full else (8, 32)
    c.update_epochs, c.num_minibatches, c.hidden = 2, 2, 64
    c.lr, c.anneal_lr = 5e-4, False
    # 2 N worlds generated per update (jaxsafe.resets), not one per env per step
    c.reset_pool = 2 * c.num_envs
    # greedy evaluation compiles Craftax's reset and step once more: full runs only
    c.eval_every, c.evaluate = 5, full
    c.eval_envs, c.eval_steps = 16, 500
    per_stage = 50 if full else 10
    c.stage_steps = (per_stage * c.num_envs * c.num_steps,) * 2
    p_strict, p_armed = env.make_params(strict), env.make_params(armed)
    p_cost = env.make_params(armed, mode="cost")
    ref = p_armed.automaton
    plans = {
        "progressive": ppo.make_plan(c, [p_strict, p_armed], p_armed, ref, task_reward=0.0),
        "zero_shot": ppo.make_plan(c, [p_armed] * 2, p_armed, ref, task_reward=0.0),
        "no_safeguard": ppo.make_plan(c, [p_cost] * 2, p_armed, ref, task_reward=0.0),
    }
    seeds = 5 if full else 3
    metrics, timing = _run_methods(c, env, plans, seeds, "craftax PPO")
    results = {k: _summary(m) for k, m in metrics.items()}
    _plot(metrics, workdir / "ppo_craftax_violations.png", c.eval_every,
          f"Craftax-Classic PPO ({seeds} seeds)")  # fmt: skip
    what = "greedy evaluation" if full else "no greedy evaluation: training episodes' success"
    table = _table(results, f"Craftax-Classic, PPO ({what}), {seeds} seeds, "
                   f"{int(results['progressive']['env_steps'])} env steps per run")  # fmt: skip
    return {"results": results, "table_md": table, "timing": timing, "seeds": seeds,
            "plots": ["ppo_craftax_violations.png"]}  # fmt: skip


def run_ppo_comparison(workdir: pathlib.Path, *, full: bool = False) -> dict:
    """Gridworld (5 methods x 5 seeds) and Craftax-Classic (3 methods) PPO comparison.

    Writes PNGs and ``ppo_results.json`` into ``workdir``; returns ``{"table_md", "plots",
    "results", "headline"}`` (plot paths relative to ``workdir``).
    """
    from jaxsafe.envs import GRIDWORLD_LABELLER, GridParams, GridWorld

    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    c = _grid_config(full)
    sg3 = jaxsafe.load_spec("sg3")
    env = jaxsafe.SafeguardWrapper(GridWorld(), GRIDWORLD_LABELLER, sg3, num_states=6)
    plans = gridworld_plans(c, env, GridParams(max_steps_in_episode=200))
    seeds = 10 if full else 5
    metrics, timing = _run_methods(c, env, plans, seeds, "gridworld PPO")
    results = {k: _summary(m) for k, m in metrics.items()}
    _plot(metrics, workdir / "ppo_gridworld_violations.png", c.eval_every,
          f"Gridworld PPO ({seeds} seeds)")  # fmt: skip
    _plot_task(metrics, workdir / "ppo_gridworld_task.png", c.eval_every,
               "Gridworld PPO: task completion (greedy, SG3)")  # fmt: skip
    steps = int(results["progressive"]["env_steps"])
    table = _table(results, f"Gridworld, PPO, {seeds} seeds, {steps} env steps per run")
    stage_end = np.asarray(plans["progressive"].stage_end)
    table += "\nProgressive curriculum per stage:\n\n" + _stage_table(
        metrics["progressive"], stage_end, c.eval_every
    )
    verdict = _verdict(results)
    out: dict[str, Any] = {
        "gridworld": {"results": results, "timing": timing, "seeds": seeds},
        "plots": ["ppo_gridworld_violations.png", "ppo_gridworld_task.png"],
    }
    adapt = _adaptation(full)
    out["adaptation"] = {**adapt["results"], "timing": adapt["timing"]}
    table += "\n" + adapt["table_md"]
    craft = _craftax(workdir, full)
    out["craftax"] = {k: craft[k] for k in ("results", "timing", "seeds")}
    out["plots"] += craft["plots"]
    table += "\n" + craft["table_md"]
    craft_verdict = _verdict(craft["results"])
    out["table_md"] = table
    out["results"] = {"gridworld": results, "craftax": craft["results"],
                      "adaptation": adapt["results"]}  # fmt: skip
    out["headline"] = (
        f"PPO gridworld ({seeds} seeds, {steps} steps): progressive safeguards had "
        f"{verdict}. Craftax-Classic (CPU budget): progressive had {craft_verdict}."
    )
    (workdir / "ppo_results.json").write_text(json.dumps(out, indent=1, default=float))
    return out
