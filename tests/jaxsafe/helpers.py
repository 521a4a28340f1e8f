"""Shared fixtures for the jaxsafe tests."""

from jaxsafe.envs import LABELS

# Get wood, then reach a smithing table; touching a hazard at any time is a violation.
REACH = {
    "name": "reach",
    "alphabet": {"labels": list(LABELS)},
    "define": {"haz": "basalt_lava or creeper"},
    "states": ["start", "has_wood", "done", "bad"],
    "initial": "start",
    "violation": ["bad"],
    "accepting": ["done"],
    "transitions": {
        "start": {"haz": "bad", "wood": "has_wood", "else": "start"},
        "has_wood": {"haz": "bad", "smith_table": "done", "else": "has_wood"},
        "done": {"haz": "bad", "else": "done"},
    },
}
