"""A reproduction that fails."""

from pathlib import Path


def reproduce(workdir: Path, *, full: bool = False) -> dict:
    raise RuntimeError("style model diverged (fake failure)")
