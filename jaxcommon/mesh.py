"""One way to build a device mesh: from a mapping of axis names to sizes.

Works the same on one CPU device, on fake CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``), on a GPU/TPU host and
across hosts after ``jax.distributed.initialize`` (``jax.devices()`` is then the
global device list, so the mesh spans every process).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
from jax.sharding import AxisType, Mesh

_AXIS_TYPES = {"explicit": AxisType.Explicit, "auto": AxisType.Auto}


def resolve_axis_sizes(axes: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """Returns ``axes`` with at most one ``-1`` replaced so sizes multiply to ``num_devices``.

    Raises:
      ValueError: on non-positive sizes, several ``-1``, or a product that does not
        match the number of devices.
    """
    sizes = dict(axes)
    if not sizes:
        raise ValueError("mesh needs at least one axis, e.g. {'data': -1}")
    wild = [name for name, size in sizes.items() if size == -1]
    bad = [f"{name}={size}" for name, size in sizes.items() if size != -1 and size < 1]
    if bad:
        raise ValueError(f"mesh axis sizes must be positive or -1, got {', '.join(bad)}")
    if len(wild) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {wild}")
    fixed = math.prod(size for size in sizes.values() if size != -1)
    if wild:
        if num_devices % fixed:
            raise ValueError(
                f"cannot fill mesh axis '{wild[0]}': {num_devices} devices are not divisible "
                f"by the other axes' product {fixed}"
            )
        sizes[wild[0]] = num_devices // fixed
    elif fixed != num_devices:
        shape = " x ".join(f"{n}={s}" for n, s in sizes.items())
        raise ValueError(f"mesh {shape} needs {fixed} devices but {num_devices} are available")
    return sizes


def make_mesh(
    axes: Mapping[str, int] | Sequence[tuple[str, int]],
    *,
    devices: Sequence[jax.Device] | None = None,
    axis_types: str = "explicit",
) -> Mesh:
    """Builds a ``jax.sharding.Mesh`` from ``{axis_name: size}`` (one size may be ``-1``).

    Args:
      axes: ordered axis names and sizes, e.g. ``{"data": 2, "expert": 4}`` or
        ``{"data": -1, "expert": 1}`` (``-1`` takes the remaining devices).
      devices: devices to lay out; defaults to all (global) devices.
      axis_types: ``"explicit"`` (sharding in the array type, the JAX default) or
        ``"auto"`` (classic GSPMD propagation).

    Returns:
      A mesh of shape ``tuple(sizes)`` with the given axis names.
    """
    if axis_types not in _AXIS_TYPES:
        raise ValueError(f"axis_types must be one of {sorted(_AXIS_TYPES)}, got {axis_types!r}")
    devices = list(jax.devices() if devices is None else devices)
    sizes = resolve_axis_sizes(dict(axes), len(devices))
    kind = (_AXIS_TYPES[axis_types],) * len(sizes)
    return jax.make_mesh(tuple(sizes.values()), tuple(sizes), axis_types=kind, devices=devices)


def describe(mesh: Mesh) -> str:
    """One line naming the mesh shape, device kind and process count."""
    shape = ", ".join(f"{name}={size}" for name, size in mesh.shape.items())
    first = mesh.devices.flat[0]
    return (
        f"mesh({shape}) over {mesh.devices.size} {first.platform} device(s) "
        f"[{first.device_kind}] in {jax.process_count()} process(es)"
    )
