"""How every benchmark reports: one JSON object on stdout and, unless disabled, in a file."""

from __future__ import annotations

import json
from pathlib import Path


def emit(result: dict, out: str | None) -> str:
    """Prints ``result`` as indented JSON and writes it to ``out`` (skipped when empty)."""
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return text


def default_out(system: str) -> str:
    """``runs/bench/<system>.json``: where ``make bench-<system>`` leaves its JSON."""
    return f"runs/bench/{system}.json"
