"""Test-wide JAX set-up: 8 fake CPU devices, set before any JAX backend starts.

Multi-device tests build meshes over these devices; single-device code simply
runs on device 0. Set here (not per test) because the device count is fixed once
the backend initialises.

One persistent XLA compilation cache per test session (``JAX_COMPILATION_CACHE_DIR``, a fresh
temporary directory removed at the end): the suite is compile-bound, and many tests compile a
program another test, another xdist worker or a test's own subprocesses (the command-line runs)
already compiled; jax reuses the executable of an identical program (same HLO, devices, flags)
instead of compiling it again. Nothing carries over between sessions. Set the variable yourself
to choose the directory (it is then kept), or to ``""`` to switch the cache off.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The xdist controller loads this file before it starts its workers, which inherit the
# variable (as do the tests' subprocesses): the whole session shares one directory.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="pytest-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
