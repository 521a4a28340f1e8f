"""Joining several processes into one JAX runtime (multi-controller).

On TPU pods and GPU clusters ``jax.distributed.initialize()`` finds its peers by
itself. On CPU (tests, laptops) it needs the coordinator address, the process
count and this process's id, and the gloo collectives; ``initialize_from`` does
both from explicit arguments or the ``JAX_COORDINATOR_ADDRESS`` /
``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID`` environment variables;
``JAX_DISTRIBUTED=auto`` calls ``jax.distributed.initialize()`` with no
arguments (cluster auto-detection on TPU pods, SLURM and Open MPI).
"""

from __future__ import annotations

import os

import jax


def initialize_from(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Calls ``jax.distributed.initialize`` when a multi-process run is requested.

    Must run before any JAX computation. Returns True when this process joined a
    multi-process runtime, False for an ordinary single-process run.
    """
    env = os.environ
    if env.get("JAX_DISTRIBUTED") == "auto":  # TPU pods, SLURM/Open MPI GPU clusters
        jax.distributed.initialize()
        return True
    coordinator_address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and "JAX_NUM_PROCESSES" in env:
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and "JAX_PROCESS_ID" in env:
        process_id = int(env["JAX_PROCESS_ID"])
    if not coordinator_address or not num_processes or num_processes == 1:
        return False
    if process_id is None:
        raise ValueError("a multi-process run needs a process id (JAX_PROCESS_ID)")
    if "cpu" in (env.get("JAX_PLATFORMS") or "cpu").split(","):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
    return True
