"""The experiment runner shared by every ``train-*`` target.

A run directory holds::

    config.json            the config in use now, plus "_resumes": what changed at each restart
    lock                   {"pid", "host", "since"} of the one process writing it (while running)
    metrics.jsonl          one strict-JSON line per logged step (non-finite values are null)
    tensorboard/           TensorBoard event files (tensorboardX), flushed at every log step
    plots/metrics.png      one panel per metric, redrawn at checkpoints (<= once per 30 s), at close
    checkpoints/<step>/    orbax checkpoints (state + config fingerprint + runner bookkeeping)

Starting a run again on the same directory resumes from its last checkpoint; with
the same seed it ends with the same final metrics as an uninterrupted run, because
batches are a pure function of (seed, step) and the whole training state is
checkpointed. Typical use (a trainer in ``experiments/trainers/``)::

    with Run(workdir, config, name="moe") as run:
        state, metrics = fit(run, init_state, train_step, batch_at, evaluate=evaluate)

Pre-emption: while ``fit`` runs, SIGTERM and SIGINT let the step in flight finish,
save a checkpoint of it, wait for the write, flush the logs and raise
:class:`Interrupted` (the command line prints its one line and exits 143/130). A
second signal aborts at once, naming the last complete checkpoint.

Non-finite guard: a train step ends with :func:`guarded_update`; the runner reads
the flag at log and checkpoint steps (no extra host sync per step) and applies
``config.train.on_nonfinite``: ``"stop"`` (default) raises :class:`NonFiniteError`
before anything of that step is saved, ``"skip"`` counts the skipped updates.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
from tqdm.auto import tqdm

from experiments.checkpoints import Checkpoints, complete_steps
from experiments.metrics_writer import MetricsWriter, read_jsonl, set_aside_after, to_scalars
from experiments.plots import plot_metrics
from experiments.rundir import (
    RESUMABLE_FIELDS,
    CheckpointMismatch,
    Interrupted,
    NonFiniteError,
    RunError,
    RunLock,
    RunLocked,
    check_workdir,
    config_differences,
    config_to_dict,
    fingerprint,
    flatten,
    validate_config,
    write_config,
)
from jaxcommon import describe, make_mesh

__all__ = [
    "RESUMABLE_FIELDS",
    "CheckpointMismatch",
    "Interrupted",
    "NonFiniteError",
    "Run",
    "RunError",
    "RunLocked",
    "Throughput",
    "banner",
    "config_differences",
    "config_to_dict",
    "fingerprint",
    "fit",
    "flatten",
    "guarded_update",
    "prepare_workdir",
]


def prepare_workdir(
    workdir: str | Path, config_dict: Mapping[str, Any], write: bool = True
) -> tuple[Path, bool]:
    """Checks and creates the run directory; returns (absolute path, holds a run already?).

    Raises:
      RunError: the path is a file, is a non-empty directory without a run, or
        holds a run started with another config. Nothing in it is touched then.
    """
    path, has_run = check_workdir(workdir, config_dict)
    if write and not has_run:
        path.mkdir(parents=True, exist_ok=True)
        write_config(path, config_dict, resuming=False, step=0)
    return path, has_run


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


def _select(ok: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
    if jax.dtypes.issubdtype(new.dtype, jax.dtypes.prng_key):
        data = jnp.where(ok, jax.random.key_data(new), jax.random.key_data(old))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(new))
    return jnp.where(ok, new, old)


def guarded_update(
    old_state: Any, new_state: Any, metrics: Mapping[str, jax.Array]
) -> tuple[Any, dict[str, jax.Array]]:
    """Keeps ``old_state`` when this step's loss or gradient norm is not finite.

    Call it at the end of a jitted train step. With ``ok = isfinite(loss) &
    isfinite(grad_norm)`` (one fused scalar reduction; ``grad_norm`` is
    ``optax.tree.norm(grads)``, optional):

    .. math::

        \\text{state} \\leftarrow
        \\begin{cases}\\text{new} & ok\\\\ \\text{old} & \\lnot ok\\end{cases}

    Returns ``(state, metrics)`` with ``metrics["nonfinite"]`` = ``1 - ok`` (int32
    scalar), which the runner reads to apply ``train.on_nonfinite``.
    """
    ok = jnp.isfinite(metrics["loss"])
    if "grad_norm" in metrics:
        ok = ok & jnp.isfinite(metrics["grad_norm"])
    state = jax.tree.map(lambda n, o: _select(ok, n, o), new_state, old_state)
    return state, {**metrics, "nonfinite": jnp.logical_not(ok).astype(jnp.int32)}


class _StopRequest:
    """SIGTERM/SIGINT handlers for the training loop: the first asks, the second aborts."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, checkpoint_dir: Path):
        self.checkpoint_dir = checkpoint_dir
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
            return
        steps = complete_steps(self.checkpoint_dir)
        last = f"step {steps[-1]}" if steps else "none"
        name = signal.Signals(signum).name
        os.write(2, f"\nsecond {name}: aborted; last complete checkpoint: {last}\n".encode())
        os._exit(128 + signum)

    @property
    def requested(self) -> bool:
        return self.signum is not None


class Throughput:
    """Examples per second over the time spent training, pauses excluded.

    ``with meter.paused(): ...`` around checkpoints and evaluation keeps them out.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.start(0)

    def start(self, step: int) -> None:
        self._t0, self._paused, self._step = self.clock(), 0.0, step

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        t = self.clock()
        try:
            yield
        finally:
            self._paused += self.clock() - t

    def rate(self, step: int, examples_per_step: int) -> float:
        """Rate since the last call (or ``start``), then restarts the interval at ``step``."""
        elapsed = self.clock() - self._t0 - self._paused
        rate = examples_per_step * (step - self._step) / max(elapsed, 1e-9)
        self.start(step)
        return rate


class Run:
    """A run directory: lock, config, metrics, TensorBoard, plots, checkpoints and progress.

    Use it as a context manager (``with Run(...) as run:``); ``close()`` is the
    same for code that cannot.

    Args:
      workdir: run directory (created; resumed if it holds a run of this config).
      config: the resolved config. ``config.mesh`` (``{axis: size}``) if present
        builds ``self.mesh``; ``config.train.max_to_keep`` bounds checkpoints.
      name: short name shown in the progress bar and plots.

    Raises:
      RunError: bad directory or config; ``RunLocked`` when another live process
        writes the directory. Nothing in the directory is changed then.
    """

    def __init__(self, workdir: str | Path, config: ml_collections.ConfigDict, *, name: str):
        self.config = config
        self.name = name
        self.config_dict = config_to_dict(config)
        try:
            validate_config(self.config_dict)
        except ValueError as err:
            raise RunError(str(err)) from None
        # Only process 0 checks, locks and writes; the others follow it.
        self.is_main = jax.process_index() == 0
        self.lock: RunLock | None = None
        if self.is_main:
            self.workdir, has_run = check_workdir(workdir, self.config_dict)
        else:  # process 0 may be creating it right now; it checks for everyone
            self.workdir = Path(workdir).expanduser().resolve()
            has_run = (self.workdir / "config.json").exists()
        if self.is_main:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.lock = RunLock(self.workdir)
            self.lock.acquire()
        try:
            self._open(has_run)
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise

    def _open(self, has_run: bool) -> None:
        if self.is_main:  # re-check under the lock: another process may have started meanwhile
            _, has_run = check_workdir(self.workdir, self.config_dict)
        self.mesh = make_mesh(dict(self.config.mesh)) if "mesh" in self.config else None
        train = self.config.get("train", {})
        self.checkpoints = Checkpoints(
            self.workdir / "checkpoints",
            fingerprint=fingerprint(self.config_dict),
            max_to_keep=int(train.get("max_to_keep", 3)),
        )
        latest = self.checkpoints.latest_step
        self.resuming = latest is not None
        changed, moved = {}, 0
        if self.is_main:
            changed = write_config(self.workdir, self.config_dict, has_run, latest or 0)
            if has_run and latest is None:  # killed before the first checkpoint: start clean
                moved = set_aside_after(self.workdir / "metrics.jsonl", 0)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils  # noqa: PLC0415

            multihost_utils.sync_global_devices(f"run-open:{self.workdir}")
        print(banner(self.mesh), flush=True)
        status = self._status(has_run, latest, changed, moved)
        print(f"run directory: {self.workdir}{status}", flush=True)
        purge = (latest or 0) + 1 if has_run else None
        self.metrics = MetricsWriter(self.workdir, purge_step=purge) if self.is_main else None
        # From here to close(), SIGTERM/SIGINT only ask to stop; fit saves at its next step.
        self.stop = _StopRequest(self.checkpoints.directory).__enter__()

    @staticmethod
    def _status(has_run: bool, latest: int | None, changed: dict, moved: int) -> str:
        if not has_run:
            return ""
        if latest is None:
            aside = f"; {moved} earlier records moved to metrics.discarded.jsonl" if moved else ""
            return f" (no checkpoint yet: starting again from step 0{aside})"
        shown = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
        return f" (resuming from step {latest}{'; changed: ' + shown if shown else ''})"

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
        if exc_type is None and self.stop.requested:  # a signal after fit returned
            raise Interrupted(self.stop.signum, None, saved=False)

    @property
    def last_checkpoint(self) -> int | None:
        steps = complete_steps(self.checkpoints.directory)
        return steps[-1] if steps else None

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
        """Writes one record (process 0) and returns its host floats."""
        if not self.is_main:
            return to_scalars(metrics)
        return self.metrics.write(step, metrics)

    def save(self, step: int, state: Any, extra: Mapping[str, Any] | None = None) -> None:
        """Checkpoints ``state`` (every process takes part) and redraws the plot.

        The plot is redrawn at most every ``PLOT_EVERY_S`` seconds (and always at close).
        """
        self.checkpoints.save(step, state, dict(extra or {}))
        if time.monotonic() - self._plotted >= self.PLOT_EVERY_S:
            self.plot()

    PLOT_EVERY_S = 30.0
    _plotted = -math.inf

    def plot(self) -> None:
        if self.is_main:
            plot_metrics(self.metrics.path, self.workdir / "plots" / "metrics.png", self.name)
            self._plotted = time.monotonic()

    def close(self) -> None:
        """Waits for checkpoints, closes writers, draws the final plot, releases the lock."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        try:
            self.checkpoints.wait()  # a second signal during this wait still aborts at once
            self.stop.__exit__()
            self.checkpoints.close()
            if self.metrics is not None:
                self.metrics.close()
            self.plot()
        finally:
            if self.lock is not None:
                self.lock.release()


_GUARDED = ("loss", "grad_norm", "nonfinite")


class _NonFiniteGuard:
    """The interval's loss / grad_norm / nonfinite device scalars, checked in one fetch."""

    def __init__(self, policy: str, skipped: int, last_checkpoint: Callable[[], int | None]):
        self.policy, self.skipped, self._last_checkpoint = policy, skipped, last_checkpoint
        self._pending: list[tuple[int, dict]] = []

    def add(self, step: int, metrics: Mapping[str, Any]) -> None:
        self._pending.append((step, {k: metrics[k] for k in _GUARDED if k in metrics}))

    def check(self) -> tuple[int, dict] | None:
        """Applies the policy to the pending steps; returns the first bad step under ``stop``."""
        pending, self._pending = self._pending, []
        if not pending:
            return None
        values = jax.device_get([m for _, m in pending])
        for (step, _), host in zip(pending, values, strict=True):
            bad = [k for k in ("loss", "grad_norm") if k in host and not math.isfinite(host[k])]
            if not bad and not int(host.get("nonfinite", 0)):
                continue
            if self.policy == "skip":
                if "nonfinite" not in host:
                    raise RunError(
                        "train.on_nonfinite='skip' needs the train step to end with "
                        "experiments.runner.guarded_update (its metrics have no 'nonfinite')"
                    )
                self.skipped += 1
                continue
            return step, {k: float(v) for k, v in host.items()}
        return None

    def error(self, step: int, host: Mapping[str, float]) -> NonFiniteError:
        name = next((k for k in ("loss", "grad_norm") if not math.isfinite(host.get(k, 0.0))), None)
        name = name or "nonfinite"
        return NonFiniteError(step, name, host.get(name, float("nan")), self._last_checkpoint())


def _agree(flag: bool, at_log: bool) -> bool:
    """Single process: ``flag``. Many: True at a log step when any process has it."""
    if jax.process_count() == 1:
        return flag
    if not at_log:
        return False
    from jax.experimental import multihost_utils  # noqa: PLC0415

    return bool(multihost_utils.process_allgather(jnp.array(flag)).any())


def _final_line(step: int, num_steps: int, last: Mapping[str, float]) -> str:
    shown = " ".join(
        f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in last.items()
    )
    if step > num_steps:
        return (
            f"FINAL step {step} (the checkpoint; train.num_steps={num_steps} is below it, "
            f"nothing trained): {shown or 'no metrics logged'}"
        )
    return f"FINAL step {step}: {shown or 'no metrics logged'}"


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
    evaluate: Callable[[Any, int], Mapping[str, Any]] | None = None,
    eval_every: int | None = None,
) -> tuple[Any, dict[str, float]]:
    """Runs ``state, metrics = train_step(state, batch_at(step))`` from the last checkpoint.

    ``train_step`` should be jitted; metrics are fetched to the host only at log,
    evaluation and checkpoint steps. ``evaluate(state, step) -> {name: scalar}``
    runs every ``eval_every`` steps and at the end, logged as ``eval/<name>``;
    its time, like checkpoint time, is left out of the progress bar's ex/s.
    Defaults come from ``run.config.train``. Prints one ``FINAL step N: ...``
    line and returns the final state and the last logged metrics.

    Raises:
      Interrupted: after SIGTERM/SIGINT, once the checkpoint of the step in flight is written.
      NonFiniteError: a non-finite loss/grad_norm under ``train.on_nonfinite="stop"``.
    """
    train = run.config.train
    num_steps = int(num_steps if num_steps is not None else train.num_steps)
    log_every = int(log_every or train.get("log_every", 10))
    checkpoint_every = int(checkpoint_every or train.get("checkpoint_every", 100))
    eval_every = int(eval_every or train.get("eval_every", 0) or 0)
    with contextlib.nullcontext(run.stop) as stop:
        start, state = run.restore_or(state)
        guard = _NonFiniteGuard(
            train.get("on_nonfinite", "stop"),
            int(run.checkpoints.extra.get("nonfinite_skipped", 0)),
            lambda: run.last_checkpoint,
        )
        if stop.requested:
            raise Interrupted(stop.signum, start, saved=run.last_checkpoint == start)
        if start >= num_steps:
            return state, _already_done(run, start, num_steps)
        state, last = _loop(
            run, state, train_step, batch_at, stop, guard, start, num_steps, log_every,
            checkpoint_every, eval_every, evaluate, key_metric, examples_per_step,
        )  # fmt: skip
    print(_final_line(num_steps, num_steps, last), flush=True)
    return state, last


def _already_done(run: Run, start: int, num_steps: int) -> dict[str, float]:
    records = [r for r in read_jsonl(run.workdir / "metrics.jsonl") if r["step"] <= start]
    last = {k: v for k, v in records[-1].items() if k != "step"} if records else {}
    print(_final_line(start, num_steps, last), flush=True)
    return last


def _loop(
    run, state, train_step, batch_at, stop, guard, start, num_steps, log_every,
    checkpoint_every, eval_every, evaluate, key_metric, examples_per_step,
):  # fmt: skip
    last: dict[str, float] = {}
    bar = tqdm(
        total=num_steps, initial=start, desc=run.name, unit="step", dynamic_ncols=True,
        file=sys.stderr, mininterval=1.0, disable=not run.is_main,
    )  # fmt: skip
    meter = Throughput()
    try:
        for step in range(start, num_steps):
            state, metrics = train_step(state, batch_at(step))
            done = step + 1
            if step == start:  # leave compilation out of the throughput
                jax.block_until_ready(metrics)
                meter.start(done)
            guard.add(done, metrics)
            at_log = done % log_every == 0 or done == num_steps
            at_eval = evaluate is not None and (
                (eval_every and done % eval_every == 0) or done == num_steps
            )
            at_ckpt = done % checkpoint_every == 0 or done == num_steps
            stopping = _agree(stop.requested, at_log)
            if at_log or at_eval or at_ckpt or stopping:
                bad = guard.check()
                if bad is not None:
                    err = guard.error(*bad)
                    run.log(bad[0], bad[1])
                    raise err
            record: dict[str, Any] = {}
            if at_log:  # not at a stop: the resumed run's records match an uninterrupted one's
                record.update(jax.device_get(metrics))
                if "nonfinite" in record:
                    record["nonfinite_skipped"] = guard.skipped
            if at_eval:
                with meter.paused():
                    scores = jax.device_get(dict(evaluate(state, done)))
                record.update({k if "/" in k else f"eval/{k}": v for k, v in scores.items()})
            if record:
                last = run.log(done, record)
                postfix = {key_metric: f"{last[key_metric]:.4g}"} if key_metric in last else {}
                if examples_per_step and at_log and done > start + 1:
                    postfix["ex/s"] = f"{meter.rate(done, examples_per_step):.3g}"
                bar.set_postfix(postfix)
            if at_ckpt or stopping:
                extra = {"nonfinite_skipped": guard.skipped}
                with meter.paused():
                    if stopping:  # pre-emption: the checkpoint only (close() draws the plot)
                        run.checkpoints.save(done, state, extra)
                    else:
                        run.save(done, state, extra)
            bar.update(1)
            if stopping:
                with meter.paused():
                    run.checkpoints.wait()
                    if run.metrics is not None:
                        run.metrics.flush()
                bar.close()
                raise Interrupted(stop.signum, done, saved=True)
    finally:
        bar.close()
    if guard.skipped:
        print(f"skipped {guard.skipped} non-finite update(s) (train.on_nonfinite=skip)")
    return state, last
