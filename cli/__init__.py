"""avfr.cli: the ``avfr-codec`` command.

Each subcommand lives in its own module exposing ``register(subparsers)``; the module adds
its parser and sets ``func(args) -> int`` as the default. Modules import heavy libraries
(torch, mediapipe) inside ``func``, so ``avfr-codec --help`` stays fast. Library code raises;
only this layer turns exceptions into exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

import avfr
from avfr.cli.native_logs import quiet_native_logs

# Subcommand modules, in the order ``--help`` lists them.
_COMMAND_MODULES: tuple[str, ...] = ("avfr.cli.data", "avfr.cli.train", "avfr.cli.average", "avfr.cli.widen",
                                     "avfr.cli.export",
                                     "avfr.cli.bench", "avfr.cli.call", "avfr.cli.gateway")


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="avfr-codec",
        description="Low-bandwidth video calls by audio-visual face reenactment (AVFR-GAN).",
    )
    parser.add_argument("--version", action="version", version=f"avfr-codec {avfr.__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``avfr-codec``; returns the process exit code.

    Native libraries' start-up log lines (mediapipe, TFLite) are dropped unless ``-v`` is given.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    with quiet_native_logs(enabled=args.verbose == 0):
        level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Run the subcommand; every failure becomes one ``avfr-codec: error:`` line and a non-zero exit code."""
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"avfr-codec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("avfr-codec: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's one place that turns exceptions into exit codes
        if args.verbose:
            traceback.print_exc()
        print(f"avfr-codec: error: {_describe(exc)}", file=sys.stderr)
        return 1


def _describe(exc: BaseException) -> str:
    """One line for an exception: its message for the expected kinds, else its type too."""
    text = " ".join(str(exc).split())
    if isinstance(exc, (OSError, ValueError)) and text:
        return text
    return f"{type(exc).__name__}: {text} (run with -v for the traceback)" if text else \
        f"{type(exc).__name__} (run with -v for the traceback)"


if __name__ == "__main__":  # python -m avfr.cli
    sys.exit(main())
