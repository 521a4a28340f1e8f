"""A reproduction that works: writes results.json and a plot, returns the contract's keys."""

import json
from pathlib import Path


def reproduce(workdir: Path, *, full: bool = False) -> dict:
    (workdir / "plots").mkdir(parents=True, exist_ok=True)
    (workdir / "plots" / "comparison.png").write_bytes(b"\x89PNG fake")
    result = {
        "headline": "SimBal reached the LBL loss 1.5x sooner (fake)",
        "table_md": "| loss | steps |\n|---|---|\n| simbal | 10 |",
        "plots": ["plots/comparison.png"],
        "full": full,
    }
    (workdir / "results.json").write_text(json.dumps(result))
    return result
