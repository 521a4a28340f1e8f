"""The one metrics writer: ``metrics.jsonl`` plus TensorBoard event files.

Each ``write(step, metrics)`` writes the scalars to TensorBoard (tensorboardX's
event protos, no TensorFlow needed) and appends one JSON line ``{"step": s,
**scalars}``, both flushed before it returns, so a killed run loses nothing it
has logged. The file is strict
JSON: a non-finite value is written as ``null`` (TensorBoard skips it).

The TensorBoard writer opens on the first write, so a run that logs nothing
leaves no empty event file; a resumed run passes ``purge_step`` so TensorBoard
drops the old events of steps that are run again.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np


def to_scalars(metrics: Mapping[str, object]) -> dict[str, float]:
    """Host floats from a flat dict of scalars (0-d arrays, numpy or Python numbers)."""
    out = {}
    for name, value in metrics.items():
        array = np.asarray(value)
        if array.size != 1:
            raise ValueError(f"metric {name!r} has shape {array.shape}; log scalars only")
        out[name] = float(array.reshape(()))
    return out


def json_line(record: Mapping[str, object]) -> str:
    """One strict-JSON line: non-finite floats become ``null``."""
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()
    }
    return json.dumps(clean, allow_nan=False) + "\n"


def read_jsonl(path: Path) -> list[dict]:
    """All records of a metrics file (empty list if it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def set_aside_after(path: Path, step: int) -> int:
    """Moves records with ``step`` > ``step`` into ``<name>.discarded.jsonl``.

    Used when a run resumes from an earlier checkpoint (or, with ``step=0``,
    restarts with none): those steps will be run again, and their old records are
    kept beside the file, not deleted. Returns the number of records moved.
    """
    records = read_jsonl(path)
    keep = [r for r in records if r["step"] <= step]
    later = [r for r in records if r["step"] > step]
    if later:
        aside = path.with_name(path.stem + ".discarded.jsonl")
        with aside.open("a") as f:
            f.writelines(json_line(r) for r in later)
        path.write_text("".join(json_line(r) for r in keep))
    return len(later)


class EventFile:
    """One TensorBoard event file written synchronously (tensorboardX's protos, no thread).

    ``write`` returns once the events are flushed to the file, unlike
    ``SummaryWriter``, whose flush leaves events queued in a background thread.
    """

    def __init__(self, directory: Path, purge_step: int | None = None):
        from tensorboardX.event_file_writer import EventsWriter  # noqa: PLC0415
        from tensorboardX.proto.event_pb2 import Event, SessionLog  # noqa: PLC0415

        directory.mkdir(parents=True, exist_ok=True)
        self._event = Event
        self._writer = EventsWriter(str(directory / "events"), f".{os.getpid()}")
        if purge_step is not None:  # TensorBoard hides older files' events from this step on
            start = SessionLog(status=SessionLog.START)
            self._writer.write_event(Event(step=purge_step, session_log=start))
        self._writer.flush()

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        from tensorboardX.summary import scalar  # noqa: PLC0415

        now = time.time()
        for name, value in scalars.items():
            if math.isfinite(value):
                event = self._event(wall_time=now, step=step, summary=scalar(name, value))
                self._writer.write_event(event)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class MetricsWriter:
    """Appends scalars to ``<workdir>/metrics.jsonl`` and ``<workdir>/tensorboard/``.

    Args:
      workdir: the run directory.
      purge_step: first step that is run again after a resume; TensorBoard hides
        earlier event files' events from this step on.
    """

    def __init__(self, workdir: Path, purge_step: int | None = None):
        self.path = workdir / "metrics.jsonl"
        self._tb_dir = workdir / "tensorboard"
        self._purge_step = purge_step
        self._tb = None

    def write(self, step: int, metrics: Mapping[str, object]) -> dict[str, float]:
        scalars = to_scalars(metrics)
        if self._tb is None:  # opened on the first record: no empty event files
            self._tb = EventFile(self._tb_dir, self._purge_step)
        self._tb.write(int(step), scalars)  # first: whatever metrics.jsonl holds, TensorBoard has
        with self.path.open("a") as f:
            f.write(json_line({"step": int(step), **scalars}))
        return scalars

    def flush(self) -> None:
        """Nothing is buffered: ``write`` flushes both files (kept for callers that ask)."""

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
