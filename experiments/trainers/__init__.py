"""One trainer module per system: ``train(config, workdir) -> dict`` (heavy imports live here).

``experiments/train_<system>.py`` is the thin command-line entry point that calls
``experiments.cli.main("experiments.trainers.<system>:train")``, so argument errors
never wait for JAX to import. See ``experiments/README.md``.
"""
