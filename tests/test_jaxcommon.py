"""Mesh construction and the 2-process jax.distributed runtime."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcommon import make_mesh, resolve_axis_sizes
from tests.multiprocess import run_distributed


def test_mesh_on_one_device_has_unit_axes():
    mesh = make_mesh({"data": 1, "expert": 1}, devices=jax.devices()[:1])
    assert dict(mesh.shape) == {"data": 1, "expert": 1}


@pytest.mark.parametrize(
    ("axes", "shape"),
    [
        ({"data": 2, "expert": 4}, {"data": 2, "expert": 4}),
        ({"data": -1, "expert": 2}, {"data": 4, "expert": 2}),
        ({"data": 8, "expert": 1, "model": 1}, {"data": 8, "expert": 1, "model": 1}),
    ],
)
def test_mesh_on_eight_fake_devices_has_requested_shape(axes, shape):
    assert jax.device_count() == 8
    mesh = make_mesh(axes)
    assert dict(mesh.shape) == shape
    assert sorted(d.id for d in mesh.devices.flat) == list(range(8))


def test_sharded_sum_on_mesh_matches_numpy():
    mesh = make_mesh({"data": 2, "expert": 4})
    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    xs = jax.device_put(x, NamedSharding(mesh, P("data", "expert")))
    assert xs.sharding.spec == P("data", "expert")
    assert float(jax.jit(jnp.sum)(xs)) == pytest.approx(x.sum())


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ({"data": 3}, "needs 3 devices but 8"),
        ({"data": -1, "expert": -1}, "at most one mesh axis"),
        ({"data": -1, "expert": 3}, "not divisible"),
        ({"data": 0, "expert": 8}, "positive or -1"),
        ({}, "at least one axis"),
    ],
)
def test_bad_mesh_shapes_raise_one_clear_error(axes, message):
    with pytest.raises(ValueError, match=message):
        resolve_axis_sizes(axes, 8)


WORKER = """
import json, os
import jaxcommon
jaxcommon.initialize_from()
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

mesh = jaxcommon.make_mesh({"data": -1})
pid = jax.process_index()
local = np.arange(4, dtype=np.float32) + 4 * pid          # rows 0..3 or 4..7
local = np.stack([local, 2 * local], axis=1)               # [4 local rows, 2]
x = jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")), local)
total = jax.jit(lambda a: jnp.sum(a * a), out_shardings=NamedSharding(mesh, P()))(x)
print(json.dumps({"pid": pid, "devices": jax.device_count(), "local": jax.local_device_count(),
                  "processes": jax.process_count(), "shape": list(x.shape),
                  "total": float(total), "mesh": jaxcommon.describe(mesh)}))
"""


@pytest.mark.multiprocess
def test_two_processes_form_one_eight_device_mesh_and_agree():
    outputs = run_distributed(WORKER, num_processes=2, local_devices=4)
    results = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    rows = np.arange(8, dtype=np.float64)
    expected = float(np.sum(rows**2) + np.sum((2 * rows) ** 2))
    assert [r["pid"] for r in results] == [0, 1]
    for r in results:
        assert (r["devices"], r["local"], r["processes"]) == (8, 4, 2)
        assert r["shape"] == [8, 2]
        assert r["total"] == pytest.approx(expected)


def test_small_loop_flags_append_the_threshold_once(monkeypatch):
    import doctest

    from jaxcommon import xla_cpu

    assert doctest.testmod(xla_cpu).attempted == 1 and doctest.testmod(xla_cpu).failed == 0
    flags = xla_cpu.small_loop_flags(4096, "--xla_cpu_enable_fast_math=false")
    assert flags.split() == [
        "--xla_cpu_enable_fast_math=false",
        "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=4096",
    ]
    with pytest.raises(ValueError, match="already sets"):
        xla_cpu.small_loop_flags(4096, flags)
    assert xla_cpu.with_small_loops(flags) == flags  # already set: left as it is
    assert xla_cpu.with_small_loops("") == xla_cpu.small_loop_flags(flags="")
    with pytest.raises(ValueError, match=">= 0"):
        xla_cpu.small_loop_flags(-1, "")
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert xla_cpu.small_loops_enabled() == (jax.default_backend() == "cpu")
    monkeypatch.setenv("XLA_FLAGS", "")
    assert not xla_cpu.small_loops_enabled()
