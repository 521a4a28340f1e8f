"""--config path.py:variant, per-field overrides and one-line errors."""

from pathlib import Path

import pytest

from experiments import cli

CONFIG = str(Path(__file__).with_name("toy_config.py"))


def test_variant_and_field_override_are_applied():
    config, workdir = cli.parse(["prog", f"--config={CONFIG}:wide", "--config.train.num_steps=9"])
    assert config.model.width == 16
    assert config.train.num_steps == 9
    assert workdir == Path("runs/toy_config-wide")


def test_explicit_workdir_is_used():
    _, workdir = cli.parse(["prog", "--config", CONFIG, "--workdir", "/tmp/x"])
    assert workdir == Path("/tmp/x")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([f"--config={CONFIG}:huge"], "unknown variant 'huge'"),
        ([f"--config={CONFIG}", "--config.model.depth=3"], "unknown config field model.depth"),
        ([f"--config={CONFIG}", "--config.train.num_steps=abc"], "invalid literal for int"),
        (["--config=does/not/exist.py"], "config file does/not/exist.py does not exist"),
        ([], "missing --config"),
    ],
)
def test_bad_command_lines_raise_one_line_usage_errors(args, message):
    with pytest.raises(cli.UsageError, match=message) as info:
        cli.parse(["prog", *args])
    assert "\n" not in str(info.value)


def test_main_prints_one_error_line_and_returns_2(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code = cli.main(
        lambda config, workdir: None, ["prog", f"--config={CONFIG}", "--config.model.nope=1"]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: unknown config field model.nope"]


def test_a_workdir_of_subruns_is_checked_by_each_run_not_as_one(tmp_path):
    (tmp_path / "faithful").mkdir()
    (tmp_path / "faithful" / "config.json").write_text("{}")  # a mode's run from before
    argv = ["prog", f"--config={CONFIG}", f"--workdir={tmp_path}"]
    with pytest.raises(cli.RunError, match="holds no run"):
        cli.check(argv)  # a single-run trainer must not write into a directory of runs
    _, workdir = cli.check(argv, subruns=True)  # make train-safe run a second time
    assert workdir == tmp_path
    (tmp_path / "file").write_text("")
    with pytest.raises(cli.RunError, match="is a file"):
        cli.check(["prog", f"--config={CONFIG}", f"--workdir={tmp_path / 'file'}"], subruns=True)
