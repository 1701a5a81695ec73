"""The `avfr-codec` command: --version, and --help on every subcommand."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import avfr
from avfr.cli import build_parser, main


def _subcommand_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.append(prefix + (name,))
                paths.extend(_subcommand_paths(sub, prefix + (name,)))
    return paths


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"avfr-codec {avfr.__version__}"


@pytest.mark.parametrize("path", _subcommand_paths(build_parser()), ids=" ".join)
def test_help_on_every_subcommand(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*path, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: avfr-codec " + " ".join(path))


def test_console_script_runs() -> None:
    res = subprocess.run([sys.executable, "-m", "avfr.cli", "--version"], capture_output=True, text=True, check=True)
    assert avfr.__version__ in res.stdout


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
