"""The streaming build: same dataset for any worker count, chunking, bucketing or interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from array_record.python import array_record_module

from jaxstyle.chess import build, replay
from jaxstyle.chess.corpus import SPLITS
from jaxstyle.chess.pgn import GameFilter, iter_games

FILTER = GameFilter(min_games_per_player=5)


@pytest.fixture(scope="module")
def dump(real_data, tmp_path_factory):
    """800 real games replayed under 40 Zipf-distributed players (10 plies each)."""
    games = [
        g
        for g in iter_games(real_data)
        if g.fen == "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1"
    ]
    path = tmp_path_factory.mktemp("dump") / "replayed.pgn.zst"
    return replay.write_replayed_dump(path, games, 800, 40, seed=1, max_plies=10)


def dataset_files(data_dir) -> dict[str, bytes]:
    """Every file of the finished dataset, by name (shards byte for byte)."""
    folder = build.version_dir(data_dir)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def records(data_dir) -> dict[str, list[bytes]]:
    """The serialized records of each split, in dataset order."""
    out = {}
    for split in SPLITS:
        paths = sorted(build.version_dir(data_dir).glob(f"*-{split}.array_record-*"))
        out[split] = [
            r for p in paths for r in array_record_module.ArrayRecordReader(str(p)).read_all()
        ]
    return out


def options(**kwargs) -> build.BuildOptions:
    base = {"workers": 1, "chunk_games": 32, "games_per_bucket": 150, "progress": False}
    return build.BuildOptions(**{**base, **kwargs})


@pytest.fixture(scope="module")
def reference(dump, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("reference")
    build.build(data_dir, dump, FILTER, options=options())
    return data_dir


def test_reference_build_has_many_buckets_and_player_major_splits(reference):
    metadata = json.loads((build.version_dir(reference) / "metadata.json").read_text())
    shards = [n for n in os.listdir(build.version_dir(reference)) if "-train." in n]
    assert len(shards) > 3  # several buckets, one train shard each
    assert metadata["players"] == sorted(metadata["players"])
    rows = metadata["player_offsets"]["train"]
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert sum(r[2] for r in rows) == metadata["positions"]["train"] > 0
    stats = metadata["read_stats"]
    assert stats["games_seen"] == 800
    assert stats["games_kept"] + sum(stats["skipped"].values()) == stats["games_seen"]


def test_two_worker_processes_write_the_same_bytes_as_one(dump, reference, tmp_path):
    build.build(tmp_path, dump, FILTER, options=options(workers=2))
    assert dataset_files(tmp_path) == dataset_files(reference)


def test_chunk_size_and_bucket_size_do_not_change_the_records(dump, reference, tmp_path):
    build.build(tmp_path, dump, FILTER, options=options(chunk_games=97, games_per_bucket=10**6))
    assert records(tmp_path) == records(reference)
    assert len(list(build.version_dir(tmp_path).glob("*-train.*"))) == 1


def test_a_build_killed_mid_stage_a_resumes_to_the_same_dataset(dump, reference, tmp_path):
    code = (
        "import sys; from jaxstyle.chess import build; from jaxstyle.chess.pgn import GameFilter;"
        f"build.build({str(tmp_path)!r}, {str(dump)!r}, GameFilter(min_games_per_player=5),"
        " options=build.BuildOptions(workers=2, chunk_games=32, games_per_bucket=150,"
        " checkpoint_s=0.0, progress=False))"
    )
    child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    progress = tmp_path / build.WORK_NAME / "progress.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if (
            progress.is_file()
            and json.loads(progress.read_text() or "{}").get("next_chunk", 0) >= 3
        ):
            break
        time.sleep(0.02)
    assert child.poll() is None, "the build finished before it could be killed"
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    done = json.loads(progress.read_text())
    assert 3 <= done["next_chunk"] and not done["done"]
    assert not build.is_prepared(tmp_path)
    build.build(tmp_path, dump, FILTER, options=options())  # resumes: continues the chunks
    assert dataset_files(tmp_path) == dataset_files(reference)
    assert not (tmp_path / build.WORK_NAME).exists() and not list(tmp_path.rglob("incomplete*"))


def test_a_second_build_of_the_same_folder_is_refused_while_one_runs(dump, tmp_path):
    with build.BuildLock(tmp_path / ".lock"):
        with pytest.raises(build.DataError, match=f"pid {os.getpid()}"):
            build.build(tmp_path, dump, FILTER, options=options())


class _CountingPool:
    """A pool stand-in: runs each task when submitted and counts what was cut ahead."""

    def __init__(self):
        self.submitted = 0

    def apply_async(self, fn, args):
        self.submitted += 1
        return _Done(args[0][1])


class _Done:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


def test_stage_a_cuts_at_most_two_chunks_per_worker_ahead_of_the_results(tmp_path):
    pool, cut = _CountingPool(), [0]

    def chunks():
        for index in range(50):
            cut[0] += 1
            yield index

    ahead = []
    for result in build._chunk_results(None, tmp_path, chunks(), pool, workers=3):
        ahead.append(pool.submitted - result - 1)
    assert ahead[:5] == [5] * 5  # bounded (Pool.imap would read the whole input first)
    assert max(ahead) <= build.IN_FLIGHT_PER_WORKER * 3 - 1
    assert len(ahead) == cut[0] == 50


def test_header_pass_on_two_workers_counts_what_one_process_counts(dump):
    from jaxstyle.chess.build_plan import header_pass

    serial = header_pass([dump], FILTER)
    with build.worker_pool(2) as pool:
        parallel = header_pass([dump], FILTER, pool=pool, workers=2)
    assert parallel[0] == serial[0] and len(serial[0]) > 10
    assert parallel[1].as_dict() == serial[1].as_dict()
    assert parallel[2] == serial[2] == [800]
