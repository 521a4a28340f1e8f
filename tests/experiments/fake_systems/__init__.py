"""Stand-in ``reproduce_<system>`` modules for ``experiments.reproduce``.

One works, one fails, one (safe) is missing.
"""
