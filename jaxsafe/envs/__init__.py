"""Environments and labelling functions: the paper's gridworld and Craftax-Classic labels."""

from jaxsafe.envs.adapters import FiveTupleAdapter
from jaxsafe.envs.craftax_labels import (
    CRAFTAX_LABELLER,
    CRAFTAX_PROPOSITIONS,
    craftax_propositions,
    make_craftax_classic,
)
from jaxsafe.envs.gridworld import (
    GRIDWORLD_LABELLER,
    LABELS,
    GridParams,
    GridState,
    GridWorld,
    label_at,
    label_grid,
    render_rgb,
    render_text,
)

__all__ = [
    "CRAFTAX_LABELLER",
    "CRAFTAX_PROPOSITIONS",
    "GRIDWORLD_LABELLER",
    "LABELS",
    "FiveTupleAdapter",
    "GridParams",
    "GridState",
    "GridWorld",
    "craftax_propositions",
    "label_at",
    "label_grid",
    "make_craftax_classic",
    "render_rgb",
    "render_text",
]
