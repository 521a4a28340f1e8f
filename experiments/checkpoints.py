"""The one checkpoint path: orbax ``CheckpointManager`` over a pytree of arrays.

A checkpoint holds the training state (any pytree: ``nnx.state`` of model and
optimiser, RNG key data, counters), the config fingerprint it was made with (so a
checkpoint from another config is refused with one clear line) and a little JSON
of runner bookkeeping (e.g. how many non-finite updates were skipped so far).

Orbax writes each checkpoint into a temporary directory and renames it to
``<step>/`` when complete, so a save cut short by a kill leaves only a
``<step>.orbax-checkpoint-tmp-*`` directory, which restore ignores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from experiments.rundir import CheckpointMismatch

__all__ = ["CheckpointMismatch", "Checkpoints", "complete_steps"]


def complete_steps(directory: str | Path) -> list[int]:
    """Steps of the finished checkpoints under ``directory`` (a directory listing only).

    Cheap and safe to call from a signal handler: it reads names, not orbax state.
    """
    try:
        names = [p.name for p in Path(directory).iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []
    return sorted(int(name) for name in names if name.isdigit())


class Checkpoints:
    """Saves and restores ``(step, state)`` under ``directory`` (made absolute)."""

    def __init__(self, directory: str | Path, *, fingerprint: str, max_to_keep: int = 3):
        self.directory = Path(directory).resolve()
        self.fingerprint = fingerprint
        self.extra: dict[str, Any] = {}  # runner bookkeeping of the latest restored checkpoint
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    @property
    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, extra: dict[str, Any] | None = None) -> bool:
        """Starts an asynchronous save of ``state`` at ``step``; False if it exists already."""
        if step in self._manager.all_steps():
            return False
        meta = {"step": step, "fingerprint": self.fingerprint, **(extra or {})}
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
        )
        return True

    def wait(self) -> None:
        """Blocks until every started save is complete on disk."""
        self._manager.wait_until_finished()

    def restore(self, like: Any) -> tuple[int, Any] | None:
        """Restores the latest checkpoint into the structure, dtypes and shardings of ``like``.

        Returns ``None`` when there is no checkpoint yet; sets ``self.extra``.
        """
        step = self.latest_step
        if step is None:
            return None
        self._manager.wait_until_finished()
        meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        meta = dict(meta["meta"])
        found = meta.get("fingerprint")
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
        self.extra = {k: v for k, v in meta.items() if k not in ("step", "fingerprint")}
        return step, restored["state"]

    def close(self) -> None:
        """Waits for pending saves (their errors surface here) and closes the manager."""
        self._manager.wait_until_finished()
        self._manager.close()
