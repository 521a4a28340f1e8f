"""jaxmoe: sparse Mixture-of-Experts layers with SimBal and classic balancing losses."""

__version__ = "0.1.0"
