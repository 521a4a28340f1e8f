"""Small helpers shared by jaxmoe, jaxstyle, jaxsafe and the experiments."""

from jaxcommon.distributed import initialize_from
from jaxcommon.mesh import describe, make_mesh, resolve_axis_sizes

__all__ = ["describe", "initialize_from", "make_mesh", "resolve_axis_sizes"]
