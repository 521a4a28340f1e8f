"""Command line of every training entry point.

``--config path.py:variant`` loads ``get_config(variant)`` (ml_collections
``config_flags``), ``--config.section.field=value`` overrides one field, and
``--workdir`` picks the run directory (default ``runs/<config>-<variant>``, so
running the same command again resumes). Bad input ends with one line naming it.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import ml_collections
from absl import flags
from ml_collections import config_flags

from experiments.checkpoints import CheckpointMismatch
from experiments.runner import RunError
from jaxcommon import initialize_from


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


def main(train: Callable[[ml_collections.ConfigDict, Path], object], argv=None) -> int:
    """Runs ``train(config, workdir)``; prints one ``error:`` line for bad input."""
    initialize_from()  # joins a multi-process run when JAX_COORDINATOR_ADDRESS etc. are set
    try:
        config, workdir = parse(sys.argv if argv is None else argv)
        train(config, workdir)
    except (UsageError, RunError, CheckpointMismatch) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
