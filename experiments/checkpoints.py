"""The one checkpoint path: orbax ``CheckpointManager`` over a pytree of arrays.

A checkpoint holds the training state (any pytree: ``nnx.state`` of model and
optimiser, RNG key data, counters) and the config fingerprint it was made with,
so a checkpoint from another config is refused with one clear line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointMismatch(ValueError):
    """A checkpoint does not fit the state or config it is restored into."""


class Checkpoints:
    """Saves and restores ``(step, state)`` under ``directory`` (made absolute)."""

    def __init__(self, directory: str | Path, *, fingerprint: str, max_to_keep: int = 3):
        self.directory = Path(directory).resolve()
        self.fingerprint = fingerprint
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    @property
    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any) -> None:
        """Starts an asynchronous save of ``state`` at ``step`` (no-op if it exists)."""
        if step in self._manager.all_steps():
            return
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                meta=ocp.args.JsonSave({"step": step, "fingerprint": self.fingerprint}),
            ),
        )

    def restore(self, like: Any) -> tuple[int, Any] | None:
        """Restores the latest checkpoint into the structure, dtypes and shardings of ``like``.

        Returns ``None`` when there is no checkpoint yet.
        """
        step = self.latest_step
        if step is None:
            return None
        self._manager.wait_until_finished()
        meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        found = meta["meta"].get("fingerprint")
        if found != self.fingerprint:
            raise CheckpointMismatch(
                f"checkpoint {self.directory / str(step)} was made with another config "
                f"(fingerprint {found} != {self.fingerprint}); use a new --workdir"
            )
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            )
        except (ValueError, KeyError, TypeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointMismatch(
                f"checkpoint {self.directory / str(step)} does not fit this model's state: {first}"
            ) from err
        return step, restored["state"]

    def close(self) -> None:
        """Waits for pending saves (their errors surface here) and closes the manager."""
        self._manager.wait_until_finished()
        self._manager.close()
