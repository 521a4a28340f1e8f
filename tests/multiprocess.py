"""Launches a Python script in N local processes joined by ``jax.distributed``.

Each process gets ``local_devices`` fake CPU devices and gloo collectives, so two
processes x four devices form one 8-device runtime: the multi-controller set-up
used on TPU pods and GPU clusters, on localhost.

The worker script reads its place from the environment (``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``; also exported as ``JAXDIST_COORDINATOR``,
``JAXDIST_NUM_PROCESSES``, ``JAXDIST_PROCESS_ID``) and typically starts with
``jaxcommon.initialize_from()``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_distributed(
    worker_source: str, num_processes: int = 2, local_devices: int = 4, timeout: float = 240
) -> list[str]:
    """Runs ``worker_source`` in ``num_processes`` processes; returns each one's stdout.

    Raises:
      RuntimeError: if any process exits non-zero or runs past ``timeout`` seconds;
        the message carries every process's stderr tail.
    """
    coordinator = f"127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "worker.py"
        script.write_text(textwrap.dedent(worker_source))
        procs = []
        for pid in range(num_processes):
            env = dict(os.environ)
            env.update(
                XLA_FLAGS=f"--xla_force_host_platform_device_count={local_devices}",
                JAX_PLATFORMS="cpu",
                JAX_COORDINATOR_ADDRESS=coordinator,
                JAX_NUM_PROCESSES=str(num_processes),
                JAX_PROCESS_ID=str(pid),
                JAXDIST_COORDINATOR=coordinator,
                JAXDIST_NUM_PROCESSES=str(num_processes),
                JAXDIST_PROCESS_ID=str(pid),
                PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]),
            )
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(script)],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        outputs, errors, failed = [], [], False
        for pid, proc in enumerate(procs):
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                for other in procs:
                    other.kill()
                out, err = proc.communicate()
                err += f"\n[process {pid} killed after {timeout} s]"
            failed |= proc.returncode != 0
            outputs.append(out)
            errors.append(f"--- process {pid} (exit {proc.returncode}) ---\n{err[-3000:]}")
        if failed:
            raise RuntimeError("distributed run failed:\n" + "\n".join(errors))
        return outputs
