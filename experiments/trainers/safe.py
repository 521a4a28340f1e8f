"""Progressive-safeguard tabular Q-learning on the gridworld: one run directory per mode.

Each mode (``faithful``, ``corrected``, ``zero_shot``, ``zero_shot_faithful``; see
experiments/configs/safe.py) is a
:class:`~experiments.runner.Run` under ``<workdir>/<mode>`` whose runner step is one safeguard
stage: the whole batch of seeds trains through the stage (one jitted ``lax.while_loop``), the
greedy policy is evaluated under the **final** safeguard, metrics are logged and the state is
checkpointed, so an interrupted run resumes at the last finished stage. :func:`train` ends by
printing one JSON line of means over seeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from experiments.configs.safe import MODES
from experiments.runner import Run, RunError
from jaxsafe import load_spec
from jaxsafe.agents import QLearner, QLearningConfig, make_qlearning, stage_episodes, stage_summary

SUMMARY_KEYS = (
    "test_success_pct",
    "test_violation_pct",
    "task_completion_pct",
    "train_violating_episodes",
)
CURVE_POINTS = 200


def modes_of(config: ml_collections.ConfigDict) -> list[str]:
    """The modes to run, checked against :data:`MODES`."""
    modes = [m.strip() for m in str(config.modes).split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown or not modes:
        raise RunError(f"config.modes: unknown {unknown or modes}; choose from {list(MODES)}")
    return modes


def build(config: ml_collections.ConfigDict, mode: str) -> QLearner:
    """The jitted learner of one mode (the curriculum, its stage budgets, the variant)."""
    specs = [load_spec(name.strip()) for name in str(config.specs).split(",")]
    ql = config.qlearning
    episodes = int(ql.num_episodes)
    faithful = mode in ("faithful", "zero_shot_faithful")
    task_index = None
    if mode.startswith("zero_shot"):
        # the final safeguard for every stage (equal stages, task index 0: no earlier task),
        # so the baseline shares the curriculum's compiled program and logs at the same points
        specs, task_index = [specs[-1]] * len(specs), [0] * len(specs)
        budget = stage_episodes(episodes, len(specs), faithful=False)
    else:
        budget = stage_episodes(episodes, len(specs), faithful=faithful)
    variant = QLearningConfig(
        epsilon=float(ql.epsilon),
        alpha=float(config.optim.learning_rate),
        gamma=float(ql.gamma),
        max_steps=int(ql.max_steps),
        faithful=faithful,
        unroll=int(ql.unroll),
    )
    return make_qlearning(specs, budget, variant, task_index=task_index)


def curves(learner: QLearner, state: Any) -> dict[str, list]:
    """Per-seed training curves, subsampled to :data:`CURVE_POINTS` episodes.

    ``env_steps`` and ``cumulative_violations`` [seeds][points] (cumulative over episodes),
    ``value_at_start`` [seeds][points] and ``episode`` [points] (episodes finished).
    """
    steps = np.cumsum(np.asarray(state.ep_steps), axis=1)
    viol = np.cumsum(np.asarray(state.ep_violation), axis=1)
    value0 = np.asarray(state.ep_value0)
    n = steps.shape[1]
    idx = np.unique(np.linspace(0, n - 1, min(CURVE_POINTS, n)).astype(int))
    return {
        "episode": (idx + 1).tolist(),
        "env_steps": steps[:, idx].tolist(),
        "cumulative_violations": viol[:, idx].tolist(),
        "value_at_start": np.round(value0[:, idx], 4).tolist(),
    }


def _means(per_seed: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in per_seed.items()}


def train_mode(config: ml_collections.ConfigDict, workdir: Path, mode: str) -> dict[str, Any]:
    """Train one mode for every seed, stage by stage; returns per-seed results and curves."""
    learner = build(config, mode)
    num_stages = int(learner.curriculum.starts.shape[0])
    root = jax.random.PRNGKey(int(config.seed))
    keys = jax.random.split(root, int(config.num_seeds))
    eval_key = jax.random.fold_in(root, 1)
    num_eval = int(config.eval.num_episodes)
    evals: list[dict[str, np.ndarray]] = []
    run_config = config.copy_and_resolve_references()
    run_config.modes = mode  # a run directory holds one mode: adding modes keeps old runs valid
    with Run(workdir, run_config, name=f"safe-{mode}") as run:
        start, state = run.restore_or(learner.init(keys))
        for stage in tqdm(range(start, num_stages), desc=f"{mode} stages", initial=start,
                          total=num_stages):  # fmt: skip
            state = learner.train_stage(state, stage)
            found = jax.device_get(
                learner.evaluate(state, jax.random.fold_in(eval_key, stage), num_eval)
            )
            summary = stage_summary(learner, state)
            metrics = {
                **_means(found),
                "train_violating_episodes": float(np.mean(summary["train_violating_episodes"])),
                "train_steps": float(np.mean(summary["train_steps"])),
            }
            run.log(stage + 1, metrics)
            run.save(stage + 1, state)
        # the final evaluation is recomputed from the final state, so a resumed run agrees
        final = jax.device_get(
            learner.evaluate(state, jax.random.fold_in(eval_key, num_stages - 1), num_eval)
        )
        evals = [final]
    summary = stage_summary(learner, state)
    per_seed = {k: np.asarray(v) for k, v in {**evals[-1], **summary}.items()}
    return {
        "seeds": int(config.num_seeds),
        "episodes_per_stage": list(learner.curriculum.episodes_per_stage),
        "per_seed": {k: v.tolist() for k, v in per_seed.items()},
        "curves": curves(learner, state),
        "state": state,
    }


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Means (and std) over seeds of :data:`SUMMARY_KEYS`, plus ``seeds``."""
    out: dict[str, Any] = {"seeds": result["seeds"]}
    for key in SUMMARY_KEYS:
        values = np.asarray(result["per_seed"][key], np.float64)
        out[key] = round(float(values.mean()), 2)
        out[f"{key}_std"] = round(float(values.std()), 2)
    return out


def run_modes(config: ml_collections.ConfigDict, workdir: Path) -> dict[str, dict[str, Any]]:
    """Every configured mode under ``workdir/<mode>``: ``{mode: train_mode(...)}``."""
    return {mode: train_mode(config, Path(workdir) / mode, mode) for mode in modes_of(config)}


def train(config: ml_collections.ConfigDict, workdir: Path) -> dict[str, Any]:
    """``make train-safe``: every mode, then ONE JSON line of means over seeds on stdout."""
    results = run_modes(config, workdir)
    line = {mode: summarise(r) for mode, r in results.items()}
    print(json.dumps(line, sort_keys=True), flush=True)
    return line
