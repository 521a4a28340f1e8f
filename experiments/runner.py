"""The experiment runner shared by every ``train-*`` target.

A run directory holds::

    config.json            resolved config (what the run was started with)
    metrics.jsonl          one JSON line per logged step
    tensorboard/           TensorBoard event files (tensorboardX)
    plots/metrics.png      one panel per metric, redrawn at each checkpoint and at the end
    checkpoints/<step>/    orbax checkpoints (state + config fingerprint)

Starting a run again on the same directory resumes from its last checkpoint; with
the same seed it ends with the same final metrics as an uninterrupted run, because
batches are a pure function of (seed, step) and the whole training state is
checkpointed. Typical use::

    run = Run(workdir, config, name="moe")
    state, metrics = fit(run, init_state, train_step, batch_at)
    run.close()
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax
import jax
import ml_collections
from tqdm.auto import tqdm

from experiments.checkpoints import Checkpoints
from experiments.metrics_writer import MetricsWriter, read_jsonl, set_aside_after, to_scalars
from experiments.plots import plot_metrics
from jaxcommon import describe, make_mesh

# Fields that may change between the first start of a run and a resume.
RESUMABLE_FIELDS = ("train.num_steps", "train.log_every", "train.checkpoint_every")


class RunError(ValueError):
    """A run cannot start in the given directory with the given config."""


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (JSON-ready leaves)."""
    flat = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = list(value) if isinstance(value, tuple) else value
    return flat


def config_to_dict(config: ml_collections.ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
    """A JSON round-tripped plain dict of the config."""
    if isinstance(config, ml_collections.ConfigDict):
        return json.loads(config.to_json_best_effort(sort_keys=True))
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def fingerprint(config_dict: Mapping[str, Any], ignore: Sequence[str] = RESUMABLE_FIELDS) -> str:
    """Short hash of the config without the fields a resume may change."""
    flat = {k: v for k, v in flatten(config_dict).items() if k not in ignore}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]


def config_differences(old: Mapping, new: Mapping, ignore: Sequence[str] = RESUMABLE_FIELDS):
    """``[(field, old, new), ...]`` for fields that differ, ignoring resumable ones."""
    a, b = flatten(old), flatten(new)
    keys = sorted((set(a) | set(b)) - set(ignore))
    return [(k, a.get(k, "<missing>"), b.get(k, "<missing>")) for k in keys if a.get(k) != b.get(k)]


def prepare_workdir(
    workdir: str | Path, config_dict: Mapping[str, Any], write: bool = True
) -> tuple[Path, bool]:
    """Checks and creates the run directory; returns (absolute path, resuming?).

    Raises:
      RunError: the path is a file, is a non-empty directory without a run, or
        holds a run started with another config. Nothing in it is touched then.
    """
    path = Path(workdir).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise RunError(f"--workdir {path} is a file, not a directory")
    config_file = path / "config.json"
    if config_file.exists():
        diffs = config_differences(json.loads(config_file.read_text()), config_dict)
        if diffs:
            shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diffs[:3])
            more = f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else ""
            raise RunError(
                f"run directory {path} holds a run with another config ({shown}{more}); "
                "use a new --workdir"
            )
        return path, True
    if path.exists() and any(path.iterdir()):
        raise RunError(f"{path} is not empty and holds no run (no config.json); use a new workdir")
    if write:
        path.mkdir(parents=True, exist_ok=True)
        config_file.write_text(json.dumps(config_dict, indent=2, sort_keys=True) + "\n")
    return path, False


def banner(mesh: jax.sharding.Mesh | None = None) -> str:
    """Versions, devices and mesh, printed at the start of every run."""
    devices = jax.devices()
    lines = [
        f"jax {jax.__version__} | flax {flax.__version__} | backend {jax.default_backend()}",
        f"devices: {len(devices)} x {devices[0].device_kind} "
        f"({jax.local_device_count()} local, {jax.process_count()} process(es))",
    ]
    if mesh is not None:
        lines.append(describe(mesh))
    return "\n".join(lines)


class Run:
    """A run directory: config, metrics, TensorBoard, plots, checkpoints and progress.

    Args:
      workdir: run directory (created; resumed if it holds a run of this config).
      config: the resolved config. ``config.mesh`` (``{axis: size}``) if present
        builds ``self.mesh``; ``config.train.max_to_keep`` bounds checkpoints.
      name: short name shown in the progress bar and plots.
    """

    def __init__(self, workdir: str | Path, config: ml_collections.ConfigDict, *, name: str):
        self.config = config
        self.name = name
        self.config_dict = config_to_dict(config)
        # Every process checks the directory; only process 0 writes logs and plots.
        self.is_main = jax.process_index() == 0
        self.workdir, self.resuming = prepare_workdir(workdir, self.config_dict, self.is_main)
        self.mesh = make_mesh(dict(config.mesh)) if "mesh" in config else None
        print(banner(self.mesh), flush=True)
        print(f"run directory: {self.workdir}{' (resuming)' if self.resuming else ''}", flush=True)
        train = config.get("train", {})
        self.checkpoints = Checkpoints(
            self.workdir / "checkpoints",
            fingerprint=fingerprint(self.config_dict),
            max_to_keep=int(train.get("max_to_keep", 3)),
        )
        self.metrics = MetricsWriter(self.workdir) if self.is_main else None

    def restore_or(self, init_state: Any) -> tuple[int, Any]:
        """``(step, state)`` from the latest checkpoint, or ``(0, init_state)``."""
        found = self.checkpoints.restore(init_state)
        if found is None:
            return 0, init_state
        step, state = found
        moved = set_aside_after(self.metrics.path, step) if self.is_main else 0
        note = f"; {moved} later metric records moved to metrics.discarded.jsonl" if moved else ""
        print(f"resumed from checkpoint at step {step}{note}", flush=True)
        return step, state

    def log(self, step: int, metrics: Mapping[str, Any]) -> dict[str, float]:
        if not self.is_main:
            return to_scalars(metrics)
        return self.metrics.write(step, metrics)

    def save(self, step: int, state: Any) -> None:
        """Checkpoints ``state`` (every process takes part) and redraws the plot."""
        self.checkpoints.save(step, state)
        self.plot()

    def plot(self) -> None:
        if self.is_main:
            plot_metrics(self.metrics.path, self.workdir / "plots" / "metrics.png", self.name)

    def close(self) -> None:
        """Waits for checkpoints, closes writers, draws the final plot."""
        self.checkpoints.close()
        if self.metrics is not None:
            self.metrics.close()
        self.plot()


def fit(
    run: Run,
    state: Any,
    train_step: Callable[[Any, Any], tuple[Any, Mapping[str, Any]]],
    batch_at: Callable[[int], Any],
    *,
    num_steps: int | None = None,
    log_every: int | None = None,
    checkpoint_every: int | None = None,
    key_metric: str = "loss",
    examples_per_step: int | None = None,
) -> tuple[Any, dict[str, float]]:
    """Runs ``state, metrics = train_step(state, batch_at(step))`` from the last checkpoint.

    ``train_step`` should be jitted; metrics are fetched to the host only at log
    steps. Defaults come from ``run.config.train``. Returns the final state and
    the last logged metrics.
    """
    train = run.config.train
    num_steps = int(num_steps if num_steps is not None else train.num_steps)
    log_every = int(log_every or train.get("log_every", 10))
    checkpoint_every = int(checkpoint_every or train.get("checkpoint_every", 100))
    start, state = run.restore_or(state)
    last: dict[str, float] = {}
    bar = tqdm(
        total=num_steps,
        initial=start,
        desc=run.name,
        unit="step",
        dynamic_ncols=True,
        file=sys.stderr,
        mininterval=1.0,
        disable=not run.is_main,
    )
    tic, since = time.perf_counter(), start
    for step in range(start, num_steps):
        state, metrics = train_step(state, batch_at(step))
        done = step + 1
        if done % log_every == 0 or done == num_steps:
            last = run.log(done, jax.device_get(metrics))
            postfix = {key_metric: f"{last[key_metric]:.4g}"} if key_metric in last else {}
            if examples_per_step:
                rate = examples_per_step * (done - since) / (time.perf_counter() - tic)
                postfix["ex/s"] = f"{rate:.3g}"
            tic, since = time.perf_counter(), done
            bar.set_postfix(postfix)
        if done % checkpoint_every == 0 or done == num_steps:
            run.save(done, state)
        bar.update(1)
    bar.close()
    if not last and start >= num_steps:
        records = [r for r in read_jsonl(run.workdir / "metrics.jsonl") if r["step"] <= num_steps]
        last = {k: v for k, v in records[-1].items() if k != "step"} if records else {}
    return state, last
