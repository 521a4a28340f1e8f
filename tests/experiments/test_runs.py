"""The toy trainer through its real command line: signals, resume, locks, non-finite, TensorBoard.

Each test starts ``python -m tests.experiments.toy_train`` in a subprocess and
signals it by PID. ``TOY_STEP_DELAY`` / ``TOY_SAVE_DELAY`` slow the toy down so a
signal lands mid-run; the steps at which it lands vary, so the checks are about
what must hold whatever the step (the checkpoint of that step exists, the resumed
run's records equal an uninterrupted run's).
"""

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import cli
from experiments.checkpoints import complete_steps
from experiments.rundir import RunLock
from experiments.runner import Throughput
from tests.experiments import toy_trainer
from tests.experiments.toy_config import get_config

REPO = Path(__file__).resolve().parents[2]
CONFIG = "tests/experiments/toy_config.py:tiny"
INTERRUPTED = re.compile(
    r"^interrupted at step (\d+); checkpoint saved; run the same command to resume$"
)


def launch(workdir, *overrides, step_delay=0.0, save_delay=0.0):
    env = dict(os.environ, TOY_STEP_DELAY=str(step_delay), TOY_SAVE_DELAY=str(save_delay))
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, "-m", "tests.experiments.toy_train", "--config", CONFIG]
    cmd += ["--workdir", str(workdir), *overrides]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc, timeout=240):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def run_cli(workdir, *overrides):
    return finish(launch(workdir, *overrides))


def records(workdir):
    """metrics.jsonl parsed strictly: a bare NaN/Infinity fails the test."""
    path = Path(workdir) / "metrics.jsonl"

    def strict(name):
        raise AssertionError(f"metrics.jsonl holds a bare {name}")

    return [json.loads(line, parse_constant=strict) for line in path.read_text().splitlines()]


def wait_for_records(workdir, n, proc, timeout=120):
    path = Path(workdir) / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.communicate()}")
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} records after {timeout} s")


def wait_for_line(proc, pattern, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if re.search(pattern, line):
            return line
        if not line and proc.poll() is not None:
            raise AssertionError(f"run ended before printing {pattern!r}")
    raise AssertionError(f"no line matching {pattern!r}")


def event_steps(workdir):
    """{event file: [steps of its 'loss' scalars]} read from the TFRecord framing."""
    from tensorboardX.proto import event_pb2

    out = {}
    for path in sorted((Path(workdir) / "tensorboard").glob("events.out.tfevents.*")):
        data, steps, offset = path.read_bytes(), [], 0
        while offset + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            steps += [event.step for v in event.summary.value if v.tag == "loss"]
        out[path] = steps
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Records of an uninterrupted tiny run (in-process: same XLA, same numbers)."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    toy_trainer.train(get_config("tiny"), workdir)
    return records(workdir)


@pytest.mark.slow
def test_sigterm_saves_step_in_flight_then_resume_is_exact_and_recorded(tmp_path, reference):
    workdir = tmp_path / "run"
    proc = launch(workdir, step_delay=0.25)  # slow enough to still run after the second one
    wait_for_records(workdir, 13, proc)
    second = run_cli(workdir)  # a second writer on the same directory while the first runs
    os.kill(proc.pid, signal.SIGTERM)
    code, out, err = finish(proc)

    assert second[0] == 2
    assert len(second[2].strip().splitlines()) == 1
    assert second[2].startswith(
        f"error: run directory {workdir} is in use by PID {proc.pid} on host {socket.gethostname()}"
    )
    assert code == 143
    assert "Traceback" not in err
    step = int(INTERRUPTED.match(err.strip().splitlines()[-1]).group(1))
    assert step in complete_steps(workdir / "checkpoints")
    assert [r["step"] for r in records(workdir)] == list(range(1, step + 1))
    assert not (workdir / "lock").exists()
    assert sorted(s for steps in event_steps(workdir).values() for s in steps) == list(
        range(1, step + 1)
    )

    code, out, err = run_cli(workdir, "--config.train.num_steps=30")
    assert code == 0, err
    assert f"(resuming from step {step})" in out
    assert re.search(r"^jax \S+ \| flax \S+ \| backend cpu$", out, re.M)  # the banner
    assert re.search(r"^devices: 8 x cpu .*\nmesh\(data=8\)", out, re.M)
    assert out.strip().splitlines()[-1].startswith("FINAL step 30: ")
    assert records(workdir) == reference
    resumes = json.loads((workdir / "config.json").read_text())["_resumes"]
    assert [r["from_step"] for r in resumes] == [step]


@pytest.mark.slow
def test_every_kill_point_resumes_exactly(tmp_path, reference):
    """SIGKILL before the first checkpoint, SIGINT mid-run, a second SIGTERM during a save."""
    workdir = tmp_path / "run"
    # 1. Killed outright before the first checkpoint (step 10): TensorBoard has the steps so far.
    proc = launch(workdir, step_delay=0.1)
    wait_for_records(workdir, 4, proc)
    proc.kill()
    finish(proc)
    assert complete_steps(workdir / "checkpoints") == []
    killed_at = len(records(workdir))
    logged = [s for steps in event_steps(workdir).values() for s in steps]
    assert logged[:killed_at] == list(range(1, killed_at + 1))

    # 2. Rerun: records set aside, a clean start (no appending); then Ctrl-C after step 13.
    proc = launch(workdir, step_delay=0.1)
    wait_for_records(workdir, 13, proc)
    os.kill(proc.pid, signal.SIGINT)
    code, out, err = finish(proc)
    assert f"no checkpoint yet: starting again from step 0; {killed_at} earlier records" in out
    assert code == 130
    assert "Traceback" not in err
    step = int(INTERRUPTED.match(err.strip().splitlines()[-1]).group(1))
    assert [r["step"] for r in records(workdir)] == list(range(1, step + 1))

    # 3. SIGTERM, then a second one while the checkpoint is being written: abort at once.
    proc = launch(workdir, step_delay=0.1, save_delay=5.0)
    wait_for_records(workdir, step + 2, proc)
    os.kill(proc.pid, signal.SIGTERM)
    wait_for_line(proc, r"^toy: saving step")
    os.kill(proc.pid, signal.SIGTERM)
    code, out, err = finish(proc)
    assert code == 143
    assert "Traceback" not in err
    pattern = r"second SIGTERM: aborted; last complete checkpoint: step (\d+)"
    last = re.fullmatch(pattern, err.strip().splitlines()[-1])
    assert last and int(last.group(1)) == complete_steps(workdir / "checkpoints")[-1]
    # An unfinished write (what a kill during orbax's save leaves) is ignored on resume.
    (workdir / "checkpoints" / "29.orbax-checkpoint-tmp-1234").mkdir()

    # 4. Resume to the end: the abort left a dead process's lock, taken over with a warning.
    assert json.loads((workdir / "lock").read_text())["pid"] == proc.pid
    code, out, err = run_cli(workdir)
    assert code == 0, err
    assert f"taking over the lock of {workdir} left by PID {proc.pid}" in err
    assert records(workdir) == reference
    assert all(p.stat().st_size > 0 for p in (workdir / "tensorboard").iterdir())


@pytest.mark.slow
def test_nonfinite_loss_stops_with_one_line_and_keeps_last_good_checkpoint(tmp_path):
    workdir = tmp_path / "run"
    code, out, err = run_cli(workdir, "--config.nan_at_step=15")
    assert code == 3
    assert err.strip().splitlines()[-1] == (
        "error: non-finite loss (inf) at step 15; stopped without saving it; last good "
        "checkpoint: step 10 (lower --config.optim.learning_rate, or set "
        "--config.train.on_nonfinite=skip)"
    )
    assert "Traceback" not in err
    assert complete_steps(workdir / "checkpoints") == [10]
    logged = records(workdir)  # strict JSON: the non-finite loss is null
    assert [r["step"] for r in logged] == list(range(1, 16))
    assert logged[-1]["loss"] is None and logged[-1]["nonfinite"] == 1
    assert (workdir / "plots" / "metrics.png").exists()


def test_skip_policy_keeps_old_state_and_counts_skipped_updates(tmp_path, capsys):
    argv = ["prog", f"--config={CONFIG}", "--workdir", str(tmp_path / "run")]
    argv += ["--config.nan_at_step=26", "--config.train.on_nonfinite=skip"]
    assert cli.main("tests.experiments.toy_trainer:train", argv) == 0
    logged = records(tmp_path / "run")
    assert [r["nonfinite_skipped"] for r in logged][24:] == [0, 1, 2, 3, 4, 5]
    assert all(r["loss"] is None for r in logged[25:])
    assert "skipped 5 non-finite update(s)" in capsys.readouterr().out


def test_num_steps_below_the_checkpoint_reports_the_checkpoints_step(tmp_path, capsys):
    workdir = tmp_path / "run"
    toy_trainer.train(get_config("small"), workdir)  # steps 1..6, checkpoint at 6
    capsys.readouterr()
    event_files = sorted((workdir / "tensorboard").iterdir())
    argv = ["prog", "--config=tests/experiments/toy_config.py:small", "--workdir", str(workdir)]
    assert (
        cli.main("tests.experiments.toy_trainer:train", [*argv, "--config.train.num_steps=4"]) == 0
    )
    out = capsys.readouterr().out
    final = out.strip().splitlines()[-1]
    assert final.startswith("FINAL step 6 (the checkpoint; train.num_steps=4 is below it")
    assert f"loss={records(workdir)[-1]['loss']:.6g}" in final
    assert sorted((workdir / "tensorboard").iterdir()) == event_files  # nothing logged, no file
    config = json.loads((workdir / "config.json").read_text())
    assert config["train"]["num_steps"] == 4
    assert config["_resumes"][-1]["changed"] == {"train.num_steps": [6, 4]}


def test_lock_held_by_a_live_process_refuses_a_run_with_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    lock = RunLock(tmp_path / "run")
    lock.acquire()
    try:
        code, out, err = run_cli(tmp_path / "run")
    finally:
        lock.release()
    assert code == 2
    assert err.startswith(f"error: run directory {tmp_path / 'run'} is in use by PID {os.getpid()}")
    assert len(err.strip().splitlines()) == 1


USAGE_PROBE = """
import sys, time
from experiments import cli
t = time.perf_counter()
code = cli.main("tests.experiments.toy_trainer:train", ["prog", *sys.argv[1:]])
print(code, "jax" in sys.modules, round(time.perf_counter() - t, 3))
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([f"--config={CONFIG[:-5]}:huge"], "unknown variant 'huge'"),
        ([f"--config={CONFIG}", "--config.train.on_nonfinite=ignore"], "must be one of"),
        ([f"--config={CONFIG}", "--config.train.log_every=0"], "log_every must be an integer"),
        ([f"--config={CONFIG}", "--workdir=tests/experiments/toy_config.py"], "is a file"),
    ],
)
def test_usage_errors_return_before_jax_is_imported(args, message):
    proc = subprocess.run(
        [sys.executable, "-c", USAGE_PROBE, *args], cwd=REPO, capture_output=True, text=True
    )
    code, jax_loaded, _seconds = proc.stdout.split()
    assert (code, jax_loaded) == ("2", "False")
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_throughput_leaves_out_paused_time():
    now = [0.0]
    meter = Throughput(clock=lambda: now[0])
    meter.start(10)
    now[0] += 1.0  # 1 s of training
    with meter.paused():
        now[0] += 30.0  # a checkpoint
    now[0] += 1.0
    assert meter.rate(20, examples_per_step=16) == 16 * 10 / 2.0


MULTIHOST_WORKER = """
import json, os
import jaxcommon
jaxcommon.initialize_from()
import jax
from jax.sharding import NamedSharding, PartitionSpec as P
from experiments.runner import Run, fit
from tests.experiments.toy_config import get_config
from tests.experiments.toy_task import make_task

config = get_config("small")
config.train.checkpoint_every = 6  # one (multi-process) save: keeps the test short
with Run({workdir!r}, config, name="toy") as run:
    holder = json.loads((run.workdir / "lock").read_text())["pid"]
    state, step_fn, batch_at, _ = make_task(config)
    replicated = NamedSharding(run.mesh, P())  # global arrays over both processes' devices

    def global_batch(step):
        x, y, step = batch_at(step)
        return (*jax.device_put((x, y), replicated), step)

    _, last = fit(run, jax.device_put(state, replicated), step_fn, global_batch)
print(json.dumps({{"process": jax.process_index(), "pid": os.getpid(), "holder": holder,
                  "holds": run.lock is not None, "loss": last["loss"]}}))
"""


@pytest.mark.slow
@pytest.mark.multiprocess
def test_only_process_zero_holds_the_lock_and_writes(tmp_path):
    from tests.multiprocess import run_distributed

    outputs = run_distributed(MULTIHOST_WORKER.format(workdir=str(tmp_path / "run")))
    results = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    assert [r["holds"] for r in results] == [True, False]
    assert {r["holder"] for r in results} == {results[0]["pid"]}
    assert results[0]["loss"] == results[1]["loss"]
    assert [r["step"] for r in records(tmp_path / "run")] == [1, 2, 3, 4, 5, 6]
    assert not (tmp_path / "run" / "lock").exists()
