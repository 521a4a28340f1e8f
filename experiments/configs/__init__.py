"""One ``get_config(variant)`` file per experiment; the shared schema: experiments/README.md."""
