"""Streaming, parallel, resumable dataset build: PGN sources → array_record shards.

Memory stays bounded by the per-player counts and one bucket, whatever the input size:

1. **Header pass** (:mod:`~jaxstyle.chess.build_plan`): tag pairs only (parsed in the
   workers, the main process cuts); games per player; players and buckets selected.
   Saved as ``plan.json``.
2. **Stage A** (:mod:`~jaxstyle.chess.build_encode`): one sequential decompression stream is
   cut into chunks of whole games (:mod:`~jaxstyle.chess.pgn_split`; the main process only
   finds game boundaries, about 100k games/s); worker processes parse (the Rust PGN
   reader for the plain games when installed, python-chess for the rest: see
   :mod:`~jaxstyle.chess.rust_reader`) and encode them (at
   most two chunks per worker in flight, so memory does not grow with the input); the
   main process appends each chunk's entries (bytes) to one spill file per bucket, in
   chunk order. Every few seconds it checkpoints ``progress.json`` (next
   chunk, spill sizes, counts); a killed build truncates the spills to the checkpoint and
   continues with the next chunk — the games before it are cut again (cheap) but not
   parsed again.
3. **Stage B** (:mod:`~jaxstyle.chess.build_shards`): per bucket (in parallel, largest
   first, on the same worker pool as stage A), the deduplicated, split, player-major
   shards; a ``bucket-*.json`` marks a bucket done.
4. **Finalize**: shards renamed into ``<data_dir>/chess_positions/<version>/`` with tfds'
   names, ``dataset_info.json`` and ``metadata.json`` written, the work folder removed.
   ``tfds.data_source`` reads the result (no TensorFlow).

Work happens in ``<data_dir>/chess_positions-build/`` (never tfds' ``incomplete.*``
folders), under an exclusive lock ``<data_dir>/.lock``: a second build of the same
``data_dir`` fails at once with one line. The output depends only on the sources, the
filter and the fractions — not on the number of workers, the chunk size, the parser or
interruptions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import multiprocessing
import multiprocessing.pool
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import tqdm

from jaxstyle.chess.build_encode import ChunkEncoder, ChunkResult, iter_spill
from jaxstyle.chess.build_plan import Plan, make_plan, ordered_results, stats_from_dict
from jaxstyle.chess.build_shards import BucketResult, shard_path, write_bucket
from jaxstyle.chess.corpus import SPLIT_FRACTIONS, SPLITS
from jaxstyle.chess.pgn import ReadStats
from jaxstyle.chess.pgn_filters import GameFilter
from jaxstyle.chess.pgn_split import Chunk, StreamDamage, iter_chunks
from jaxstyle.chess.rust_reader import resolve_parser
from jaxstyle.chess.sources import DataError, resolve_sources

DATASET_NAME = "chess_positions"
VERSION = "1.0.0"
WORK_NAME = f"{DATASET_NAME}-build"


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """How to build (none of these change the output).

    Attributes:
      workers: parse/encode processes (1 = in the main process).
      chunk_games: games per chunk handed to a worker.
      games_per_bucket: player-games per stage-B bucket (bounds stage B's memory).
      checkpoint_s: seconds between stage-A checkpoints.
      progress: tqdm bars on stderr (when it is a terminal).
      parser: stage A's PGN parser: ``"auto"`` (the Rust reader for the plain games when
        ``rust_pgn_reader_python_binding`` is installed, else python-chess), ``"rust"``
        (an error without it) or ``"python-chess"``; byte-identical output either way
        (see :mod:`jaxstyle.chess.rust_reader`).
    """

    workers: int = 1
    chunk_games: int = 200
    games_per_bucket: int = 2_000
    checkpoint_s: float = 2.0
    progress: bool = True
    parser: str = "auto"


class BuildLock:
    """Exclusive ``flock`` on ``path`` (released when the process ends, even by SIGKILL)."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> BuildLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DataError(
                f"{self.path.parent} is being built by another process (pid {holder}); "
                "wait for it to finish or choose another output folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def version_dir(data_dir: Path) -> Path:
    return Path(data_dir) / DATASET_NAME / VERSION


def is_prepared(data_dir: str | os.PathLike) -> bool:
    """Whether ``data_dir`` holds a finished dataset of this version."""
    return (version_dir(Path(data_dir)) / "dataset_info.json").is_file()


def build(
    data_dir: str | os.PathLike,
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    game_filter: GameFilter | None = None,
    fractions: tuple[float, float, float] = SPLIT_FRACTIONS,
    options: BuildOptions | None = None,
) -> Path:
    """Builds the dataset in ``data_dir`` (or continues an interrupted build); returns the
    version folder. A finished dataset is reused as it is.

    Raises:
      DataError: missing sources, no games, no players left, or another build running.
    """
    options = options or BuildOptions()
    game_filter = game_filter or GameFilter()
    data_dir = Path(data_dir)
    resolve_parser(options.parser)  # an unknown or missing parser fails first
    if is_prepared(data_dir):
        return version_dir(data_dir)
    files = resolve_sources(sources)  # fails before anything is created
    created = not data_dir.exists()
    try:
        with BuildLock(data_dir / ".lock"):
            if is_prepared(data_dir):
                return version_dir(data_dir)
            work = data_dir / WORK_NAME
            work.mkdir(parents=True, exist_ok=True)
            # one pool for both stages, started first: the workers import while the main
            # process runs the header pass
            with worker_pool(options.workers) as pool:
                plan = _load_or_make_plan(work, files, game_filter, fractions, options, pool)
                run_stage_a(plan, work, options, pool)
                results = run_stage_b(plan, work, options, pool)
            out = finalize(plan, work, results, data_dir)
    except DataError:
        if created:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    return out


def _load_or_make_plan(work, files, game_filter, fractions, options, pool=None) -> Plan:
    path = work / "plan.json"
    if path.is_file():
        plan = Plan.load(path)
        same = (plan.sources, plan.game_filter, plan.fractions) == (
            [str(f) for f in files],
            game_filter,
            tuple(fractions),
        )
        if same:
            return plan
        shutil.rmtree(work)  # an unfinished build of other sources or filters
        work.mkdir(parents=True)
    bar = _bar(options, "header pass", "games")
    plan = make_plan(
        files,
        game_filter,
        fractions,
        options.games_per_bucket,
        _updater(bar),
        pool=pool,
        workers=options.workers,
    )
    bar.close()
    plan.save(path)
    return plan


def _bar(options: BuildOptions, desc: str, unit: str, total: int | None = None):
    # disable=None: bars only on a terminal, no carriage-return junk in logs and pipes
    return tqdm.tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=None if options.progress else True,
        mininterval=1.0,
    )


def _updater(bar):
    def update(seen: int) -> None:
        bar.update(seen - bar.n)

    return update


# --- stage A ----------------------------------------------------------------------------


@dataclasses.dataclass
class Progress:
    """Stage-A checkpoint: chunks ``< next_chunk`` are in the spills (up to ``spill_sizes``)."""

    chunk_games: int
    next_chunk: int = 0
    spill_sizes: list[int] = dataclasses.field(default_factory=list)
    positions: int = 0
    stats: dict = dataclasses.field(default_factory=lambda: ReadStats().as_dict())
    done: bool = False


def _save_progress(work: Path, progress: Progress, kept: np.ndarray) -> None:
    np.save(work / "kept.tmp.npy", kept)
    os.replace(work / "kept.tmp.npy", work / "kept.npy")
    tmp = work / "progress.json.tmp"
    tmp.write_text(json.dumps(dataclasses.asdict(progress)))
    os.replace(tmp, work / "progress.json")


def _load_progress(work: Path, plan: Plan, options: BuildOptions) -> tuple[Progress, np.ndarray]:
    path = work / "progress.json"
    if path.is_file():
        progress = Progress(**json.loads(path.read_text()))
        return progress, np.load(work / "kept.npy")
    progress = Progress(options.chunk_games, spill_sizes=[0] * plan.num_buckets)
    return progress, np.zeros(len(plan.players), dtype=np.int64)


def spill_path(work: Path, bucket: int) -> Path:
    return work / "spill" / f"bucket-{bucket:06d}.bin"


def run_stage_a(plan: Plan, work: Path, options: BuildOptions, pool=None) -> None:
    """Parses and encodes every chunk into the bucket spill files (resumes; see module).

    ``pool``: a :func:`worker_pool` (``None``: in this process).
    """
    progress, kept = _load_progress(work, plan, options)
    if progress.done:
        return
    spills = SpillFiles(work / "spill", progress.spill_sizes)
    stats = stats_from_dict(progress.stats)
    damage: list[StreamDamage] = []
    files = [Path(s) for s in plan.sources]
    chunks = (
        c
        for c in iter_chunks(files, progress.chunk_games, damage)
        if c.index >= progress.next_chunk
    )
    bar = _bar(options, "parse+encode", "games", plan.games_total)
    bar.update(min(plan.games_total, progress.next_chunk * progress.chunk_games))
    last = time.monotonic()
    try:
        for result in _chunk_results(plan, work, chunks, pool, options.workers, options.parser):
            for bucket, blob in result.spill.items():
                spills.append(bucket, blob)
            for pid, n in result.kept.items():
                kept[pid] += n
            stats.merge(result.stats)
            progress.positions += result.positions
            progress.next_chunk = result.index + 1
            bar.update(result.stats.games_seen)
            if time.monotonic() - last > options.checkpoint_s:
                _checkpoint(work, progress, stats, kept, spills)
                last = time.monotonic()
        for item in damage:
            stats.add_damage(item)
        progress.done = True
        _checkpoint(work, progress, stats, kept, spills)
    finally:
        bar.close()


class SpillFiles:
    """One append-only file per bucket; ``sizes`` are the bytes up to the last checkpoint.

    Files are opened per append (a build may have far more buckets than open files are
    allowed); on a resume every file is first cut back to its checkpointed size.
    """

    def __init__(self, folder: Path, sizes: list[int]):
        folder.mkdir(exist_ok=True)
        self.folder = folder
        self.sizes = list(sizes)
        for bucket, size in enumerate(self.sizes):
            path = self.path(bucket)
            if path.exists() and path.stat().st_size != size:
                os.truncate(path, size)

    def path(self, bucket: int) -> Path:
        return self.folder / f"bucket-{bucket:06d}.bin"

    def append(self, bucket: int, blob: bytes) -> None:
        with open(self.path(bucket), "ab") as handle:
            handle.write(blob)
        self.sizes[bucket] += len(blob)


def _checkpoint(work, progress: Progress, stats: ReadStats, kept, spills: SpillFiles) -> None:
    progress.spill_sizes = list(spills.sizes)
    progress.stats = stats.as_dict()
    _save_progress(work, progress, kept)


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[multiprocessing.pool.Pool | None]:
    """``workers`` spawned processes for both stages (``None`` for ``workers <= 1``)."""
    if workers <= 1:
        yield None
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield pool


_ENCODERS: dict[str, ChunkEncoder] = {}


def _encode(task: tuple[str, Chunk, str]) -> ChunkResult:
    """Worker side: the plan is read from ``plan.json`` once per process and build."""
    plan_path, chunk, parser = task
    key = f"{parser}:{plan_path}"
    if key not in _ENCODERS:
        _ENCODERS.clear()
        _ENCODERS[key] = ChunkEncoder(Plan.load(Path(plan_path)), parser)
    return _ENCODERS[key](chunk)


def _chunk_results(
    plan: Plan, work: Path, chunks, pool, workers: int, parser: str = "auto"
) -> Iterator[ChunkResult]:
    """Chunk results in chunk order, from ``pool`` (or in-process when it is ``None``).

    At most :data:`IN_FLIGHT_PER_WORKER` chunks per worker are cut ahead of the results
    (``Pool.imap`` would read the whole input ahead of slow workers: unbounded memory).
    """
    if pool is None:
        encoder = ChunkEncoder(plan, parser)
        yield from (encoder(chunk) for chunk in chunks)
        return
    plan_path = str(work / "plan.json")
    tasks = ((plan_path, chunk, parser) for chunk in chunks)
    yield from ordered_results(pool, _encode, tasks, IN_FLIGHT_PER_WORKER * workers)


IN_FLIGHT_PER_WORKER = 2
"""Chunks queued or running per worker process during stage A."""


# --- stage B ----------------------------------------------------------------------------


def final_ids(plan: Plan, kept: np.ndarray) -> np.ndarray:
    """Final player ids: rank among players with >= min games after parsing; -1 dropped."""
    keep = kept >= max(1, plan.game_filter.min_games_per_player)
    ids = np.full(len(kept), -1, dtype=np.int64)
    ids[keep] = np.arange(int(keep.sum()))
    return ids


def _bucket_job(args) -> BucketResult:
    plan, work, ids, bucket = args
    path = spill_path(work, bucket)
    blob = path.read_bytes() if path.exists() else b""
    result = write_bucket(
        bucket,
        iter_spill(blob),
        players=plan.players,
        final_ids=ids,
        fractions=plan.fractions,
        shard_dir=work / "shards",
    )
    result.save(work / f"bucket-{bucket:06d}.json")
    return result


def _spill_size(work: Path, bucket: int) -> int:
    path = spill_path(work, bucket)
    return path.stat().st_size if path.exists() else 0


def run_stage_b(plan: Plan, work: Path, options: BuildOptions, pool=None) -> list[BucketResult]:
    """Writes every bucket's shards (skipping finished ones); results in bucket order.

    Buckets go to ``pool`` largest spill first, so the last ones to finish are small.
    """
    ids = final_ids(plan, np.load(work / "kept.npy"))
    if not (ids >= 0).any():
        raise DataError(
            "filters left no players after parsing the moves: "
            + stats_from_dict(
                json.loads((work / "progress.json").read_text())["stats"]
            ).summary_line()
        )
    (work / "shards").mkdir(exist_ok=True)
    todo = [b for b in range(plan.num_buckets) if not (work / f"bucket-{b:06d}.json").is_file()]
    jobs = [(plan, work, ids, b) for b in todo]
    bar = _bar(options, "write shards", "buckets", plan.num_buckets)
    bar.update(plan.num_buckets - len(todo))
    if pool is None or len(jobs) <= 1:
        for job in jobs:
            _bucket_job(job)
            bar.update()
    else:
        jobs.sort(key=lambda job: -_spill_size(work, job[3]))
        for _ in pool.imap_unordered(_bucket_job, jobs):
            bar.update()
    bar.close()
    return [BucketResult.load(work / f"bucket-{b:06d}.json") for b in range(plan.num_buckets)]


# --- finalize ---------------------------------------------------------------------------


def dataset_metadata(plan: Plan, results: list[BucketResult], stats: ReadStats) -> dict:
    """JSON-able metadata: per-player facts and counts (nothing per game or per position)."""
    players: list[str] = []
    games_per_player: dict[str, int] = {}
    split_games: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    for result in results:
        games_per_player.update(result.games_per_player)
        for split in SPLITS:
            split_games[split].update(result.split_games[split])
    players = list(games_per_player)  # bucket order = provisional id order = sorted names
    offsets: dict[str, list[list[int]]] = {}
    positions: dict[str, int] = {}
    for split in SPLITS:
        start, rows = 0, []
        for result in results:
            for player_id, count in result.player_positions[split]:
                rows.append([player_id, start, count])
                start += count
        offsets[split], positions[split] = rows, start
    stats = ReadStats(
        files=list(plan.sources),
        games_seen=stats.games_seen,
        games_kept=sum(r.games_kept for r in results),
        skipped=Counter(stats.skipped),
        messages=list(stats.messages),
    )
    for result in results:
        stats.skipped.update(result.skipped)
    return {
        "encoding": {"layout": "maia2", "planes": 18, "vocab_size": 1880},
        "players": players,
        "num_games": stats.games_kept,
        "game_id": "ordinal of the game among all games of the sources, in reading order",
        "games_per_player": games_per_player,
        "split_games": split_games,
        "player_offsets": offsets,
        "positions": positions,
        "filter": plan.game_filter.as_dict(),
        "fractions": list(plan.fractions),
        "sources": list(plan.sources),
        "read_stats": stats.as_dict(),
        "read_summary": stats.summary_line(),
        "header_summary": plan.header_stats.summary_line("passed the headers"),
    }


def finalize(plan: Plan, work: Path, results: list[BucketResult], data_dir: Path) -> Path:
    """Moves the shards into the tfds layout and writes ``dataset_info.json``."""
    import tensorflow_datasets as tfds

    from jaxstyle.chess.tfds_builder import ChessPositions

    stats = stats_from_dict(json.loads((work / "progress.json").read_text())["stats"])
    metadata = dataset_metadata(plan, results, stats)
    out = version_dir(data_dir)
    staging = data_dir / DATASET_NAME / f".{VERSION}.finalizing"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    split_infos = []
    for split in SPLITS:
        done = [r for r in results if r.records[split]]
        for index, result in enumerate(done):
            name = f"{DATASET_NAME}-{split}.array_record-{index:05d}-of-{len(done):05d}"
            os.replace(shard_path(work / "shards", split, result.bucket), staging / name)
        if done:
            split_infos.append(
                tfds.core.SplitInfo(
                    name=split,
                    shard_lengths=[r.records[split] for r in done],
                    num_bytes=sum(r.num_bytes[split] for r in done),
                )
            )
    builder = ChessPositions(data_dir=str(data_dir))
    info = builder.info
    info.set_splits(tfds.core.SplitDict(split_infos))
    info.set_file_format("array_record", override=True)
    info.metadata.update(metadata)
    info.write_to_directory(staging)
    os.replace(staging, out)
    shutil.rmtree(work)
    return out
