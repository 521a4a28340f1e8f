"""Tests of the jaxmoe MoE layer, losses and metrics."""
