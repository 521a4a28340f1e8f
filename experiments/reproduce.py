"""``make reproduce``: each paper's headline comparison at CPU scale, one after another.

Each system contributes ``experiments/reproduce_<system>.py`` with a
``reproduce(workdir: pathlib.Path) -> dict`` that trains what the comparison
needs and returns its summary table. Systems whose reproduction is not built yet
are named, not faked. Results land in ``runs/reproduce/<system>/`` and a joint
``runs/reproduce/summary.json``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path

SYSTEMS = {
    "moe": "SimBal vs. load-balancing loss on a small MoE language model (jaxmoe)",
    "style": "style vectors: move matching, stylometry and few-shot players (jaxstyle)",
    "safe": "progressive safeguards: violations and return per curriculum stage (jaxsafe)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/reproduce", type=Path)
    parser.add_argument("--only", choices=sorted(SYSTEMS), action="append")
    args = parser.parse_args(argv)
    summary = {}
    for system, what in SYSTEMS.items():
        if args.only and system not in args.only:
            continue
        module_name = f"experiments.reproduce_{system}"
        if importlib.util.find_spec(module_name) is None:
            print(f"[{system}] not built yet: {what} (no {module_name.replace('.', '/')}.py)")
            summary[system] = {"status": "not built yet"}
            continue
        print(f"[{system}] {what}", flush=True)
        module = importlib.import_module(module_name)
        summary[system] = {"status": "done", **module.reproduce(args.workdir / system)}
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    built = sum(entry["status"] == "done" for entry in summary.values())
    summary_path = args.workdir / "summary.json"
    print(f"reproduced {built} of {len(summary)} systems; summary in {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
