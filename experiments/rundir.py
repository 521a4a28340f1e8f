"""The run directory without JAX: config checks, the resume record and the writer lock.

Everything here imports only the standard library and ``ml_collections``, so the
command line can refuse a bad ``--workdir`` (a file, another config's run, a
directory another process is writing) in well under a second, before JAX loads.

``config.json`` holds the resolved config the run uses now, plus ``"_resumes"``:
one entry per restart, ``{"time": ..., "changed": {"train.num_steps": [old, new]}}``.

``lock`` holds ``{"pid", "host", "since"}`` of the one process writing the
directory. It is an exclusive ``flock`` on that file, so the kernel drops it when
the process dies; a lock file left behind by a dead process is taken over with a
warning.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import hashlib
import json
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

# Fields that may change between the first start of a run and a resume.
RESUMABLE_FIELDS = (
    "train.num_steps",
    "train.log_every",
    "train.checkpoint_every",
    "train.eval_every",
    "train.max_to_keep",
    "train.on_nonfinite",
)
HISTORY_KEY = "_resumes"
LOCK_NAME = "lock"


class RunError(ValueError):
    """A run cannot start in the given directory with the given config."""


class RunLocked(RunError):
    """Another live process holds the run directory's lock."""


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


def _config_part(config_dict: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config_dict.items() if not str(k).startswith("_")}


def fingerprint(config_dict: Mapping[str, Any], ignore: Sequence[str] = RESUMABLE_FIELDS) -> str:
    """Short hash of the config without the fields a resume may change."""
    flat = {k: v for k, v in flatten(_config_part(config_dict)).items() if k not in ignore}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]


def config_differences(old: Mapping, new: Mapping, ignore: Sequence[str] = RESUMABLE_FIELDS):
    """``[(field, old, new), ...]`` for fields that differ, ignoring ``ignore`` and ``_`` keys."""
    a, b = flatten(_config_part(old)), flatten(_config_part(new))
    keys = sorted((set(a) | set(b)) - set(ignore))
    return [(k, a.get(k, "<missing>"), b.get(k, "<missing>")) for k in keys if a.get(k) != b.get(k)]


def check_workdir(workdir: str | Path, config_dict: Mapping[str, Any]) -> tuple[Path, bool]:
    """Checks the run directory without writing; returns (absolute path, holds a run?).

    Raises:
      RunError: the path is a file, is a non-empty directory without a run, or
        holds a run started with another config.
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
    if path.exists() and any(p.name != LOCK_NAME for p in path.iterdir()):
        raise RunError(f"{path} is not empty and holds no run (no config.json); use a new workdir")
    return path, False


def write_config(path: Path, config_dict: Mapping[str, Any], resuming: bool, step: int) -> dict:
    """Writes ``config.json`` (the config in use now); on a resume appends the changes.

    Returns the fields that changed: ``{field: [old, new]}``.
    """
    config_file = path / "config.json"
    history, changed = [], {}
    if resuming:
        old = json.loads(config_file.read_text())
        history = list(old.get(HISTORY_KEY, []))
        a, b = flatten(_config_part(old)), flatten(_config_part(config_dict))
        changed = {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        history.append({"time": now, "from_step": step, "changed": changed})
    record = dict(_config_part(config_dict))
    if history:
        record[HISTORY_KEY] = history
    tmp = config_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, config_file)
    return changed


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_holder(path: Path) -> dict | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"pid": None, "host": "?", "raw": text[:80]}


def describe_holder(holder: Mapping[str, Any]) -> str:
    return (
        f"PID {holder.get('pid')} on host {holder.get('host')} (since {holder.get('since', '?')})"
    )


def check_unlocked(workdir: Path) -> None:
    """Raises ``RunLocked`` when a live process holds ``workdir``'s lock (read-only check)."""
    holder = _read_holder(workdir / LOCK_NAME)
    if holder is None:
        return
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        if holder["pid"] != os.getpid() and pid_alive(holder["pid"]):
            raise RunLocked(
                f"run directory {workdir} is in use by {describe_holder(holder)}; "
                "wait for it or use another --workdir"
            )


class RunLock:
    """An exclusive lock on a run directory, held by one process.

    ``acquire()`` raises ``RunLocked`` naming the holder when another live
    process has it; a lock file left by a dead process is taken over with a
    warning on stderr. ``release()`` removes the file.
    """

    def __init__(self, workdir: Path):
        self.path = Path(workdir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        for _ in range(10):  # retry if the file is replaced under us
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                holder = _read_holder(self.path) or {"pid": "?", "host": "?"}
                raise RunLocked(
                    f"run directory {self.path.parent} is in use by {describe_holder(holder)}; "
                    "wait for it or use another --workdir"
                ) from None
            try:
                same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same_file = False
            if not same_file:
                os.close(fd)
                continue
            self._fd = fd
            self._take_over(_read_holder(self.path))
            return
        raise RunError(f"could not lock {self.path}: it keeps being replaced")

    def _take_over(self, previous: dict | None) -> None:
        host = socket.gethostname()
        if previous is not None and previous.get("pid") != os.getpid():
            if previous.get("host") == host and isinstance(previous.get("pid"), int):
                if pid_alive(previous["pid"]):
                    self.release()
                    raise RunLocked(
                        f"run directory {self.path.parent} is in use by "
                        f"{describe_holder(previous)}; wait for it or use another --workdir"
                    )
                why = "that process is gone"
            else:
                why = "its lock is no longer held"
            print(
                f"warning: taking over the lock of {self.path.parent} left by "
                f"{describe_holder(previous)}: {why}",
                file=sys.stderr,
                flush=True,
            )
        since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        text = json.dumps({"pid": os.getpid(), "host": host, "since": since}) + "\n"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text.encode(), 0)
        os.fsync(self._fd)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


class CheckpointMismatch(ValueError):
    """A checkpoint does not fit the state or config it is restored into."""


class Interrupted(Exception):  # noqa: N818 - reads as what happened
    """SIGTERM/SIGINT stopped the run after saving (or with nothing to save).

    ``str(err)`` is the one line the command line prints; ``exit_code`` is 128 + signal.
    """

    def __init__(self, signum: int, step: int | None, saved: bool):
        self.signum, self.step, self.saved = signum, step, saved
        if step is None:
            line = (
                "interrupted outside the training loop (no step in flight to save); "
                "run the same command to resume"
            )
        elif saved:
            line = f"interrupted at step {step}; checkpoint saved; run the same command to resume"
        else:
            line = (
                f"interrupted at step {step} before any step ran (nothing new to save); "
                "run the same command to resume"
            )
        super().__init__(line)

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)


class NonFiniteError(RuntimeError):
    """A step produced a non-finite loss or gradient norm and ``train.on_nonfinite`` is ``stop``."""

    def __init__(self, step: int, metric: str, value: float, last_checkpoint: int | None):
        self.step, self.metric, self.value, self.last_checkpoint = (
            step,
            metric,
            value,
            last_checkpoint,
        )
        kept = (
            f"last good checkpoint: step {last_checkpoint}"
            if last_checkpoint is not None
            else "no checkpoint was saved"
        )
        super().__init__(
            f"non-finite {metric} ({value}) at step {step}; stopped without saving it; {kept} "
            "(lower --config.optim.learning_rate, or set --config.train.on_nonfinite=skip)"
        )


NONFINITE_POLICIES = ("stop", "skip")


def validate_config(config: Mapping[str, Any]) -> None:
    """Checks the shared ``train`` fields; raises ``ValueError`` with one line."""
    train = config.get("train") or {}
    for field in ("num_steps", "log_every", "checkpoint_every", "max_to_keep", "eval_every"):
        if field in train and train[field] is not None:
            value = train[field]
            low = 0 if field in ("num_steps", "eval_every") else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"train.{field} must be an integer >= {low}, got {value!r}")
    policy = train.get("on_nonfinite", "stop")
    if policy not in NONFINITE_POLICIES:
        raise ValueError(
            f"train.on_nonfinite must be one of {list(NONFINITE_POLICIES)}, got {policy!r}"
        )
