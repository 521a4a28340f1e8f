"""Test-wide JAX set-up: 8 fake CPU devices, set before any JAX backend starts.

Multi-device tests build meshes over these devices; single-device code simply
runs on device 0. Set here (not per test) because the device count is fixed once
the backend initialises.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
