"""jaxstyle benchmark (JSON on stdout): ``python -m experiments.bench.style``.

Merges the data-pipeline keys (:mod:`experiments.bench.style_data`: encoder, readers,
streaming build, header pass, memory, Lichess-month estimate) with the model keys of
:mod:`experiments.bench.style_model` (when that module exists). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from experiments.bench.report import default_out, emit


def _model_keys(**sizes) -> dict:
    """``style_model.run(**sizes)``, or a note while that module does not exist yet."""
    try:
        style_model = importlib.import_module("experiments.bench.style_model")
    except ImportError as error:
        if error.name != "experiments.bench.style_model":
            raise
        return {"model": "experiments/bench/style_model.py is not written yet"}
    return style_model.run(**sizes)


def run(data: dict | None = None, model: dict | None = None, only: str | None = None) -> dict:
    """The data keys (``data``: sizes for :func:`style_data.run`) merged with the model keys
    (``model``: sizes for ``style_model.run``); ``only="data"`` / ``"model"``: one half."""
    result = {}
    if only != "model":
        from experiments.bench import style_data

        result.update(style_data.run(**(data or {})))
    if only != "data":
        result.update(_model_keys(**(model or {})))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", type=int, default=120, help="synthetic games (encoder keys)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale-games", type=int, default=300_000, help="header-pass dump")
    parser.add_argument("--build-games", type=int, default=6_000)
    parser.add_argument("--rss-games", type=int, default=1_000, help="1x size of the RSS builds")
    parser.add_argument("--out", default=default_out("style"), help="also write the JSON here")
    parser.add_argument("--only", choices=("data", "model"), help="run one half of the keys")
    args = parser.parse_args(argv)
    sizes = {
        "games": args.games,
        "repeats": args.repeats,
        "scale_games": args.scale_games,
        "build_games": args.build_games,
        "rss_games": args.rss_games,
    }
    emit(run(sizes, only=args.only), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
