"""``make reproduce``: each paper's headline comparison at CPU scale, one after another.

Each system contributes ``experiments/reproduce_<system>.py`` with::

    def reproduce(workdir: pathlib.Path, *, full: bool = False) -> dict:
        # trains what the comparison needs (quick by default, the full CPU-sized
        # one with full=True), writes workdir/results.json and returns at least
        return {"headline": "<one sentence: did the claim reproduce, by how much>",
                "table_md": "<markdown table>", "plots": ["plots/x.png", ...], ...}

and raises when it cannot. This command runs them, writes
``runs/reproduce/summary.json`` (every system's status, time, headline and
results) and ``runs/reproduce/REPORT.md`` (headlines, tables and the plots), and
exits non-zero, naming them, when any selected system failed or is not built yet.

    python -m experiments.reproduce             # quick versions of all systems
    python -m experiments.reproduce --full      # full CPU-sized comparisons (make reproduce FULL=1)
    python -m experiments.reproduce --only moe  # one system (repeatable)
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from experiments.rundir import Interrupted

SYSTEMS = {
    "moe": "SimBal vs. load-balancing loss on a small MoE language model (jaxmoe)",
    "style": "style vectors: move matching, stylometry and few-shot players (jaxstyle)",
    "safe": "progressive safeguards: violations and return per curriculum stage (jaxsafe)",
}
REQUIRED = {"headline": str, "table_md": str, "plots": list}


def _check_result(result: Any) -> dict:
    if not isinstance(result, dict):
        raise TypeError(f"reproduce() returned {type(result).__name__}, not a dict")
    for key, kind in REQUIRED.items():
        if not isinstance(result.get(key), kind):
            raise TypeError(f"reproduce() result has no {kind.__name__} {key!r}")
    return result


def run_system(system: str, package: str, workdir: Path, full: bool) -> dict:
    """Runs one system's ``reproduce``; returns its summary entry (raises only on interrupt)."""
    module_name = f"{package}.reproduce_{system}"
    if importlib.util.find_spec(module_name) is None:
        path = module_name.replace(".", "/") + ".py"
        return {"status": "not built", "error": f"{path} does not exist"}
    out = workdir / system
    tic = time.perf_counter()
    try:
        module = importlib.import_module(module_name)
        result = _check_result(module.reproduce(out, full=full))
    except (KeyboardInterrupt, Interrupted):
        raise
    except Exception as err:  # noqa: BLE001 - a failed system is reported, the others still run
        out.mkdir(parents=True, exist_ok=True)
        (out / "traceback.txt").write_text(traceback.format_exc())
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return {
            "status": "failed",
            "error": f"{type(err).__name__}: {first}",
            "traceback": str(out / "traceback.txt"),
            "seconds": round(time.perf_counter() - tic, 1),
        }
    return {"status": "done", "seconds": round(time.perf_counter() - tic, 1), **result}


def report_md(summary: dict[str, dict], full: bool) -> str:
    """The human-readable report: each system's headline, table and plots (paths relative to it)."""
    lines = [
        "# Reproduction report",
        "",
        f"Mode: {'full CPU-sized comparisons' if full else 'quick'} "
        "(`python -m experiments.reproduce" + (" --full" if full else "") + "`).",
        "",
        "| system | status | time (s) | headline |",
        "|---|---|---|---|",
    ]
    for system, entry in summary.items():
        headline = entry.get("headline") or entry.get("error", "")
        seconds = entry.get("seconds", "")
        lines.append(f"| {system} | {entry['status']} | {seconds} | {headline} |")
    for system, entry in summary.items():
        lines += [
            "",
            f"## {system}: {SYSTEMS.get(system, '')}",
            "",
            f"Status: **{entry['status']}**",
        ]
        if entry["status"] != "done":
            lines += ["", f"`{entry.get('error', '')}`"]
            continue
        lines += ["", entry["headline"], "", entry["table_md"].strip()]
        for plot in entry["plots"]:
            link = f"{system}/{plot}"
            lines += ["", f"![{Path(plot).stem}]({link})"]
    return "\n".join(lines) + "\n"


def _raise_on_term(signum, frame):
    raise Interrupted(signum, None, saved=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/reproduce", type=Path)
    parser.add_argument("--only", choices=sorted(SYSTEMS), action="append", help="repeatable")
    parser.add_argument("--full", action="store_true", help="the full CPU-sized comparisons")
    parser.add_argument(
        "--package", default="experiments", help="where reproduce_<system>.py live (tests)"
    )
    args = parser.parse_args(argv)
    selected = [s for s in SYSTEMS if not args.only or s in args.only]
    previous = signal.signal(signal.SIGTERM, _raise_on_term)
    try:
        return _run(args, selected)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, selected: list[str]) -> int:
    summary: dict[str, dict] = {}
    code, system = 0, None
    try:
        for i, system in enumerate(selected, 1):
            print(f"[{i}/{len(selected)}] {system}: {SYSTEMS[system]}", flush=True)
            summary[system] = entry = run_system(system, args.package, args.workdir, args.full)
            detail = entry.get("headline") or entry.get("error")
            print(f"[{i}/{len(selected)}] {system}: {entry['status']}: {detail}", flush=True)
    except (KeyboardInterrupt, Interrupted) as err:
        signum = getattr(err, "signum", signal.SIGINT)
        print(f"reproduce interrupted during {system}; summary holds the systems before it")
        if system is not None:
            summary[system] = {"status": "interrupted"}
        code = 128 + int(signum)
    args.workdir.mkdir(parents=True, exist_ok=True)
    summary_path = args.workdir / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (args.workdir / "REPORT.md").write_text(report_md(summary, args.full))
    done = [s for s, e in summary.items() if e["status"] == "done"]
    bad = [f"{s} ({e['status']})" for s, e in summary.items() if e["status"] != "done"]
    print(
        f"reproduced {len(done)} of {len(selected)} systems; "
        f"report in {args.workdir / 'REPORT.md'}, summary in {summary_path}"
    )
    if bad:
        print(f"NOT reproduced: {', '.join(bad)}", file=sys.stderr)
        code = code or 1
    return code


if __name__ == "__main__":
    sys.exit(main())
