"""Command line of every training entry point.

``--config path.py:variant`` loads ``get_config(variant)`` (ml_collections
``config_flags``), ``--config.section.field=value`` overrides one field, and
``--workdir`` picks the run directory (default ``runs/<config>-<variant>``, so
running the same command again resumes). Bad input ends with one line naming it.

Arguments, the config and the run directory (file? another config's run? locked
by a live process?) are checked *before* JAX is imported, so a usage error comes
back in well under a second. An entry point is a thin module::

    import sys
    from experiments import cli
    if __name__ == "__main__":
        sys.exit(cli.main("experiments.trainers.moe:train"))

Exit codes: 0 done, 2 bad input or run directory, 3 non-finite loss/gradient
(``train.on_nonfinite=stop``), 130 / 143 interrupted by SIGINT / SIGTERM after
saving a checkpoint (run the same command to resume).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import ml_collections
from absl import flags
from ml_collections import config_flags

from experiments.rundir import (
    CheckpointMismatch,
    Interrupted,
    NonFiniteError,
    RunError,
    check_unlocked,
    check_workdir,
    config_to_dict,
    validate_config,
)

EXIT_USAGE, EXIT_NONFINITE = 2, 3


class UsageError(ValueError):
    """Bad command-line input; its message is one line."""


def _config_arg(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _unknown_override(argv: Sequence[str], config: ml_collections.ConfigDict) -> str | None:
    """The first ``--config.x.y`` override whose field does not exist in ``config``."""
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        path = arg[len("--config.") :].split("=", 1)[0]
        node = config
        for part in path.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                return path
            node = node[part]
    return None


def default_workdir(config_arg: str) -> Path:
    path, _, variant = config_arg.partition(":")
    return Path("runs") / f"{Path(path).stem}-{variant or 'default'}"


def parse(argv: Sequence[str]) -> tuple[ml_collections.ConfigDict, Path]:
    """Parses ``argv`` (program name first) into (config, workdir).

    Raises:
      UsageError: missing/unknown config file or variant, unknown field, bad value.
    """
    argv = list(argv)
    config_arg = _config_arg(argv)
    if config_arg is None:
        raise UsageError("missing --config path/to/config.py:variant")
    config_path = config_arg.partition(":")[0]
    if not Path(config_path).is_file():
        raise UsageError(f"config file {config_path} does not exist")
    flag_values = flags.FlagValues()
    config_flag = config_flags.DEFINE_config_file(
        "config",
        None,
        "config file and variant: path/to/config.py:variant",
        flag_values=flag_values,
        lock_config=True,
        sys_argv=argv,
    )
    flags.DEFINE_string(
        "workdir", None, "run directory (default runs/<config>-<variant>)", flag_values=flag_values
    )
    try:
        flag_values(argv)
    except (AttributeError, KeyError) as err:
        base = _base_config(config_arg)
        field = _unknown_override(argv, base) if base is not None else None
        raise UsageError(f"unknown config field {field or err}") from None
    except flags.Error as err:
        raise UsageError(_one_line(err)) from None
    except (ValueError, TypeError) as err:
        raise UsageError(_one_line(err)) from None
    workdir = flag_values.workdir
    return config_flag.value, Path(workdir) if workdir else default_workdir(config_arg)


def _base_config(config_arg: str) -> ml_collections.ConfigDict | None:
    """The config without overrides (used only to name a bad override field)."""
    path, has_variant, variant = config_arg.partition(":")
    spec = importlib.util.spec_from_file_location("_config_for_error", path)
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_config(*([variant] if has_variant else []))
    except Exception:  # noqa: BLE001 - only used to improve an error message
        return None


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    # absl wraps errors raised while loading the config; keep the innermost line.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def check(argv: Sequence[str], *, subruns: bool = False) -> tuple[ml_collections.ConfigDict, Path]:
    """``parse`` plus the checks that need no JAX: shared config fields and the run directory.

    ``subruns``: the trainer keeps one run per ``<workdir>/<name>`` (each checked when it
    opens), so the workdir itself holds no run and only must not be a file.

    Raises:
      UsageError: bad arguments or config values.
      RunError: a ``--workdir`` that is a file, another config's run, or locked by a live process.
    """
    config, workdir = parse(argv)
    try:
        validate_config(config_to_dict(config))
    except ValueError as err:
        raise UsageError(str(err)) from None
    if subruns:
        if workdir.exists() and not workdir.is_dir():
            raise RunError(f"--workdir {workdir} is a file, not a directory")
    elif os.environ.get("JAX_PROCESS_ID", "0") == "0":  # the other processes follow process 0
        path, _ = check_workdir(workdir, config_to_dict(config))
        check_unlocked(path)
    return config, workdir


def _load(target: str | Callable) -> Callable:
    """``"package.module:function"`` → the function (imports the module: JAX loads here)."""
    if callable(target):
        return target
    module_name, _, function = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, function or "train")


class _TermBeforeTraining:
    """Until the runner installs its handlers, SIGTERM raises ``Interrupted`` (nothing to save)."""

    def __enter__(self):
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    @staticmethod
    def _raise(signum, frame):
        raise Interrupted(signum, None, saved=False)


def main(
    train: str | Callable[[ml_collections.ConfigDict, Path], object],
    argv=None,
    *,
    subruns: bool = False,
) -> int:
    """Runs ``train(config, workdir)``; returns the exit code (see the module docstring).

    ``train`` is ``"module:function"`` (imported only after the arguments passed
    the checks) or the function itself; ``subruns`` as in :func:`check`.
    """
    try:
        config, workdir = check(sys.argv if argv is None else argv, subruns=subruns)
    except (UsageError, RunError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    with _TermBeforeTraining():
        try:
            from jaxcommon.distributed import initialize_from  # noqa: PLC0415 - imports JAX

            initialize_from()  # joins a multi-process run when JAX_COORDINATOR_ADDRESS etc. are set
            _load(train)(config, workdir)
        except (UsageError, RunError, CheckpointMismatch) as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USAGE
        except NonFiniteError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_NONFINITE
        except Interrupted as err:
            print(err, file=sys.stderr, flush=True)
            return err.exit_code
        except KeyboardInterrupt:
            print(Interrupted(signal.SIGINT, None, saved=False), file=sys.stderr, flush=True)
            return 128 + signal.SIGINT
    return 0
