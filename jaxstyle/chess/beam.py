"""The streaming build as an Apache Beam pipeline (DirectRunner here; Dataflow, Flink, Spark).

Same stages and the same functions as the local build (:mod:`jaxstyle.chess.build`), so
the output is byte-identical for the same sources, filter and fractions:

* the header pass and the plan run in the driver (one sequential read of the headers);
* ``Create(files) → FlatMap(cut into chunks) → Reshuffle → ParDo(ChunkEncoder)``: stage A
  on any number of workers (a ``.zst`` stream is not splittable, so each file is cut by
  one worker and its chunks are spread by the reshuffle);
* ``(bucket, spill entries) → GroupByKey → write_bucket`` with the kept-games counts as a
  side input: stage B (order of arrival does not matter, the bucket sorts);
* the driver finalizes (tfds layout, ``dataset_info.json``) like the local build.

Why not tfds' own Beam support: ``tfds.beam`` pipelines go through tfds' ``Writer``, which
serializes with TensorFlow-free code but shuffles and hashes example keys across the whole
split (no player-major order, hence no ``player_offsets``), and tfds' Beam writer expects
``GeneratorBasedBuilder._generate_examples`` to produce examples one at a time with
stable keys — the per-player 80/10/10 split needs all of a player's games together first,
which is exactly the ``GroupByKey`` here. The plain pipeline keeps the shards identical to
the local build's.

Run (the ``[beam]`` extra; see ``constraints-beam.txt``)::

    python -m jaxstyle.chess.beam --data-dir out/tfds --pgn dump.pgn.zst \\
        --filter '{"min_games_per_player": 50}' \\
        --runner DirectRunner --direct_running_mode multi_processing --direct_num_workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from jaxstyle.chess import build
from jaxstyle.chess.build_encode import ChunkEncoder, iter_spill
from jaxstyle.chess.build_plan import Plan
from jaxstyle.chess.build_shards import write_bucket
from jaxstyle.chess.corpus import SPLIT_FRACTIONS
from jaxstyle.chess.pgn import ReadStats
from jaxstyle.chess.pgn_filters import GameFilter
from jaxstyle.chess.pgn_split import StreamDamage, iter_chunks
from jaxstyle.chess.sources import DataError, resolve_sources


class _CutFile(beam.DoFn):
    """file index → chunks of that file (tagged output ``damage``: stream damage)."""

    def __init__(self, plan: Plan, chunk_games: int):
        self.plan, self.chunk_games = plan, chunk_games

    def process(self, file_index: int):
        damage: list[StreamDamage] = []
        first = sum(self.plan.file_games[:file_index])
        path = Path(self.plan.sources[file_index])
        yield from iter_chunks(
            [path], self.chunk_games, damage, file_offset=file_index, first_game=first
        )
        for item in damage:
            yield beam.pvalue.TaggedOutput("damage", (file_index, item))


class _Encode(beam.DoFn):
    def __init__(self, plan: Plan):
        self.plan = plan

    def setup(self):
        self.encoder = ChunkEncoder(self.plan)

    def process(self, chunk):
        yield self.encoder(chunk)


class _WriteBucket(beam.DoFn):
    def __init__(self, plan: Plan, work: str):
        self.plan, self.work = plan, work

    def process(self, element, kept: dict):
        bucket, blobs = element
        counts = np.zeros(len(self.plan.players), dtype=np.int64)
        for pid, n in kept.items():
            counts[pid] = n
        entries = [e for blob in blobs for e in iter_spill(blob)]
        result = write_bucket(
            bucket,
            entries,
            players=self.plan.players,
            final_ids=build.final_ids(self.plan, counts),
            fractions=self.plan.fractions,
            shard_dir=Path(self.work) / "shards",
        )
        result.save(Path(self.work) / f"bucket-{bucket:06d}.json")
        yield bucket


def _merge_stats(items) -> dict:
    stats = ReadStats()
    for item in items:
        stats.merge(ReadStats(**{**item, "skipped": Counter(item["skipped"])}))
    return stats.as_dict()


def _write_stats(stats: dict, damage: list, kept: dict, plan: Plan, work: str) -> None:
    merged = ReadStats(
        games_seen=stats["games_seen"],
        games_kept=stats["games_kept"],
        skipped=Counter(stats["skipped"]),
    )
    for _, item in sorted(damage, key=lambda pair: pair[0]):
        merged.add_damage(item)
    counts = np.zeros(len(plan.players), dtype=np.int64)
    for pid, n in kept.items():
        counts[pid] = n
    progress = build.Progress(chunk_games=0, stats=merged.as_dict(), done=True)
    build._save_progress(Path(work), progress, counts)


def run_pipeline(plan: Plan, work: Path, chunk_games: int, beam_args: list[str]) -> None:
    """Stages A and B on Beam; leaves what :func:`build.finalize` needs in ``work``."""
    (work / "shards").mkdir(parents=True, exist_ok=True)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        cut = (
            pipeline
            | "files" >> beam.Create(list(range(len(plan.sources))))
            | "cut" >> beam.ParDo(_CutFile(plan, chunk_games)).with_outputs("damage", main="chunks")
        )
        results = cut.chunks | "spread" >> beam.Reshuffle() | "encode" >> beam.ParDo(_Encode(plan))
        kept = (
            results
            | "kept" >> beam.FlatMap(lambda r: r.kept.items())
            | "sum kept" >> beam.CombinePerKey(sum)
        )
        stats = (
            results
            | "stats" >> beam.Map(lambda r: r.stats.as_dict())
            | "merge stats" >> beam.CombineGlobally(_merge_stats)
        )
        _ = (
            results
            | "spill" >> beam.FlatMap(lambda r: r.spill.items())
            | "by bucket" >> beam.GroupByKey()
            | "write" >> beam.ParDo(_WriteBucket(plan, str(work)), kept=beam.pvalue.AsDict(kept))
        )
        _ = stats | "save stats" >> beam.Map(
            _write_stats,
            damage=beam.pvalue.AsList(cut.damage),
            kept=beam.pvalue.AsDict(kept),
            plan=plan,
            work=str(work),
        )


def build_with_beam(
    data_dir: str | os.PathLike,
    sources,
    game_filter: GameFilter | None = None,
    fractions: tuple[float, float, float] = SPLIT_FRACTIONS,
    beam_args: list[str] | None = None,
    chunk_games: int = 200,
    games_per_bucket: int = 2_000,
) -> Path:
    """:func:`jaxstyle.chess.build.build` with stages A and B on Beam; returns the folder."""
    game_filter = game_filter or GameFilter()
    data_dir = Path(data_dir)
    if build.is_prepared(data_dir):
        return build.version_dir(data_dir)
    files = resolve_sources(sources)
    options = build.BuildOptions(games_per_bucket=games_per_bucket, progress=False)
    with build.BuildLock(data_dir / ".lock"):
        work = data_dir / build.WORK_NAME
        shutil.rmtree(work, ignore_errors=True)  # a Beam run restarts whole (Beam retries)
        work.mkdir(parents=True)
        plan = build._load_or_make_plan(work, files, game_filter, fractions, options)
        run_pipeline(plan, work, chunk_games, beam_args or [])
        results = [
            build.BucketResult.load(work / f"bucket-{b:06d}.json")
            for b in range(plan.num_buckets)
            if (work / f"bucket-{b:06d}.json").is_file()
        ]
        results = _fill_empty_buckets(plan, results)
        return build.finalize(plan, work, results, data_dir)


def _fill_empty_buckets(plan: Plan, results):
    """Buckets that received no entry (no kept game of theirs) write nothing."""
    have = {r.bucket for r in results}
    empty = [
        build.BucketResult(
            bucket=b,
            records={s: 0 for s in build.SPLITS},
            num_bytes={s: 0 for s in build.SPLITS},
            player_positions={s: [] for s in build.SPLITS},
            games_per_player={},
            split_games={s: {} for s in build.SPLITS},
            games_kept=0,
            skipped={},
        )
        for b in range(plan.num_buckets)
        if b not in have
    ]
    return sorted(results + empty, key=lambda r: r.bucket)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxstyle.chess.beam", description=__doc__)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--pgn", nargs="+", required=True)
    parser.add_argument("--filter", default="{}", help="GameFilter fields as JSON")
    parser.add_argument("--chunk-games", type=int, default=200)
    parser.add_argument("--games-per-bucket", type=int, default=2_000)
    args, beam_args = parser.parse_known_args(argv)
    try:
        game_filter = GameFilter.from_dict({**GameFilter().as_dict(), **json.loads(args.filter)})
        out = build_with_beam(
            args.data_dir,
            args.pgn,
            game_filter,
            beam_args=beam_args,
            chunk_games=args.chunk_games,
            games_per_bucket=args.games_per_bucket,
        )
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"dataset ready in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
