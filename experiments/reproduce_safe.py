"""Progressive safeguards (arXiv:2410.24096) at CPU scale: ``reproduce(workdir, full=False)``.

Part of ``make reproduce`` (``FULL=1`` for the full version). Tabular Q-learning on the paper's
gridworld, 5000 episodes per run, seeds vmapped:

* ``faithful``: the authors' protocol with its quirks (1666/1666/1666/2 episodes, task index
  read as an automaton state, greedy action updated after exploring), checked against the range
  their code gives on this CPU (test success 86-98 %, violating training episodes 1704-2372);
* ``corrected``: equal stages, the update done right, the documented initialisation;
* ``zero_shot`` / ``zero_shot_faithful``: the final safeguard SG3 from scratch for all 5000
  episodes (no curriculum; run as four equal SG3 stages with task index 0, so all four modes
  share one compiled program), with the corrected / the authors' learner, so the curriculum is
  compared with its baseline under the same update rule.

When ``experiments/safe_ppo_experiments.py`` is present its PPO comparison (gridworld and
Craftax-Classic, with baselines) is run under ``workdir/ppo`` and merged. Writes
``workdir/results.json`` and PNG plots; returns ``headline``, ``table_md``, ``plots``.
Quick: 20 seeds (+ the PPO quick part); full: 64 seeds.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import time
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from experiments.configs.safe import get_config
from experiments.trainers.safe import SUMMARY_KEYS, run_modes

AUTHORS = {  # their code on this CPU, 4 seeds (../shared/papers/progressive-safeguards.md)
    "test_success_pct": (86.0, 98.0, 91.5),
    "train_violating_episodes": (1704.0, 2372.0, 2016.0),
}
MODES = ("faithful", "zero_shot_faithful", "corrected", "zero_shot")
LABELS = {
    "faithful": "progressive, faithful (authors' learner)",
    "zero_shot_faithful": "zero-shot SG3, authors' learner",
    "corrected": "progressive, corrected learner",
    "zero_shot": "zero-shot SG3, corrected learner",
}


def _stage_evals(workdir: pathlib.Path) -> list[dict]:
    """Per-stage records (greedy test under SG3 after each stage) from a run's metrics."""
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _ms(values, digits: int = 1) -> str:
    v = np.asarray(values, np.float64)
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"


def table(results: dict[str, dict]) -> str:
    """Markdown: mean ± std over seeds per mode, the authors' range beside it."""
    head = (
        "| method | seeds | test success % | test violation % | task completion % "
        "| violating training episodes | training env steps | value at s0 |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for mode, r in results.items():
        p = r["per_seed"]
        rows.append(
            f"| {LABELS[mode]} | {r['seeds']} | {_ms(p['test_success_pct'])} "
            f"| {_ms(p['test_violation_pct'])} | {_ms(p['task_completion_pct'])} "
            f"| {_ms(p['train_violating_episodes'], 0)} "
            f"| {_ms(np.asarray(p['train_steps']) / 1e6, 2)}M "
            f"| {_ms(p['value_at_start'], 3)} |"
        )
    rows.append(
        "| authors' code on this CPU (4 seeds) | 4 | 91.5 (86–98) | 8.5 (2–14) | not measured "
        "| 2016 (1704–2372) | 3.4–4.0M | 0.98–1.0 |"
    )
    per_stage = ["", "Violating training episodes per stage (mean ± std over seeds):", ""]
    per_stage.append("| method | " + " | ".join(f"stage {k}" for k in range(4)) + " |")
    per_stage.append("|---|---|---|---|---|")
    for mode, r in results.items():
        v = np.asarray(r["per_seed"]["violations_per_stage"], np.float64)
        eps = r["episodes_per_stage"]
        cells = [f"{_ms(v[:, k], 0)} / {eps[k]}" for k in range(v.shape[1])]
        per_stage.append(
            f"| {LABELS[mode]} | " + " | ".join(cells + [""] * (4 - len(cells))) + " |"
        )
    per_stage.append(
        "| authors (4 seeds) | 714–1406 / 1666 | 686–751 / 1666 | 242–612 / 1666 | 0–1 / 2 |"
    )
    return head + "\n".join(rows) + "\n" + "\n".join(per_stage) + "\n"


def plot_violations(results: dict[str, dict], path: pathlib.Path) -> None:
    """Cumulative violating episodes vs environment steps, mean over seeds with min-max band."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    for mode, r in results.items():
        steps = np.asarray(r["curves"]["env_steps"], np.float64)
        viol = np.asarray(r["curves"]["cumulative_violations"], np.float64)
        x = steps.mean(0) / 1e6
        ax.plot(x, viol.mean(0), label=LABELS[mode])
        ax.fill_between(x, viol.min(0), viol.max(0), alpha=0.2)
    ax.set_xlabel("environment steps (millions)")
    ax.set_ylabel("cumulative violating episodes")
    ax.set_title("Gridworld, tabular Q-learning")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_success(results: dict[str, dict], evals: dict[str, list[dict]], path: pathlib.Path):
    """Greedy test success (and task completion) under SG3 after each stage vs env steps."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    for mode, records in evals.items():
        if not records:
            continue
        x = [rec["train_steps"] / 1e6 for rec in records]
        ax.plot(x, [rec["test_success_pct"] for rec in records], "o-", label=LABELS[mode])
        ax.plot(
            x, [rec["task_completion_pct"] for rec in records], "x--", alpha=0.6,
            label=f"{mode}: task completion",
        )  # fmt: skip
    ax.set_xlabel("environment steps (millions, mean over seeds)")
    ax.set_ylabel("% of 100 greedy SG3 episodes")
    ax.set_ylim(-2, 102)
    ax.set_title("Success (no violation) after each stage")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _in_range(values, low: float, high: float) -> str:
    v = np.asarray(values, np.float64)
    inside = int(np.sum((v >= low) & (v <= high)))
    return f"{inside}/{v.size} seeds inside [{low:g}, {high:g}]"


def headline(results: dict[str, dict]) -> str:
    f = results["faithful"]["per_seed"]
    parts = [
        f"Faithful tabular protocol: test success {np.mean(f['test_success_pct']):.1f}% "
        f"(authors 91.5%; {_in_range(f['test_success_pct'], 86, 98)}), violating training "
        f"episodes {np.mean(f['train_violating_episodes']):.0f} (authors 2016; "
        f"{_in_range(f['train_violating_episodes'], 1704, 2372)})"
    ]
    pairs = (("faithful", "zero_shot_faithful", "authors' learner"),
             ("corrected", "zero_shot", "corrected learner"))  # fmt: skip
    for prog, zero, name in pairs:
        if prog in results and zero in results:
            p, z = results[prog]["per_seed"], results[zero]["per_seed"]
            parts.append(
                f"{name}: curriculum {np.mean(p['train_violating_episodes']):.0f} violating "
                f"episodes and {np.mean(p['test_success_pct']):.1f}% success vs zero-shot "
                f"{np.mean(z['train_violating_episodes']):.0f} and "
                f"{np.mean(z['test_success_pct']):.1f}%"
            )
    return "; ".join(parts) + "."


def _ppo_part(workdir: pathlib.Path, full: bool) -> dict[str, Any] | None:
    if importlib.util.find_spec("experiments.safe_ppo_experiments") is None:
        return None
    from experiments.safe_ppo_experiments import run_ppo_comparison  # noqa: PLC0415

    return run_ppo_comparison(workdir / "ppo", full=full)


def _jsonable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "state"}


def reproduce(workdir: pathlib.Path, *, full: bool = False) -> dict[str, Any]:
    """Run the tabular comparison (and the PPO one when built); write results.json and plots."""
    workdir = pathlib.Path(workdir)
    (workdir / "plots").mkdir(parents=True, exist_ok=True)
    config = get_config("cpu")
    config.modes = ",".join(MODES)
    config.num_seeds = 64 if full else 20
    t0, c0 = time.perf_counter(), time.process_time()
    tabular = {m: _jsonable(r) for m, r in run_modes(config, workdir / "qlearning").items()}
    timings = {"tabular": {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}}
    evals = {m: _stage_evals(workdir / "qlearning" / m) for m in tabular}
    plots = ["plots/qlearning_cumulative_violations.png", "plots/qlearning_success.png"]
    plot_violations(tabular, workdir / plots[0])
    plot_success(tabular, evals, workdir / plots[1])
    summary = {
        m: {k: float(np.mean(r["per_seed"][k])) for k in SUMMARY_KEYS} for m, r in tabular.items()
    }
    out: dict[str, Any] = {
        "headline": headline(tabular),
        "table_md": "### Gridworld, tabular Q-learning (5000 episodes)\n\n" + table(tabular),
        "plots": plots,
        "qlearning": {"summary": summary, "runs": tabular, "stage_evals": evals},
        "authors": AUTHORS,
    }
    t0, c0 = time.perf_counter(), time.process_time()
    ppo = _ppo_part(workdir, full)
    timings["ppo"] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
    out["timings"] = timings  # wall and this process's CPU seconds per part
    if ppo is not None:
        out["headline"] += " PPO: " + ppo["headline"]
        out["table_md"] += "\n" + ppo["table_md"]
        out["plots"] += [f"ppo/{p}" for p in ppo["plots"]]
        out["ppo"] = ppo["results"]
    (workdir / "results.json").write_text(json.dumps(out, indent=1, default=float) + "\n")
    return out
