"""The ``numlp`` command: a thin shell over the Python API.

User errors (bad flags, missing or damaged files, invalid models) print one line,
``numlp: error: ...``, and exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from numlp._version import __version__
from numlp.checks import printable
from numlp.cli import data, models, runs, sweep, train
from numlp.cli.common import EXIT_INTERRUPTED, CLIError

EXIT_USAGE = 2

__all__ = ["CLIError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="numlp",
        description="Multilayer perceptrons from scratch in NumPy: train, evaluate, predict.",
        epilog="Run `numlp COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"numlp {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in (train, sweep, models, runs, data):  # the order `numlp --help` lists them in
        group.add_commands(commands)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    # Everything after the command `bench` belongs to the benchmark's own parser; only the
    # command word counts (an option value such as `--out bench` does not).
    at = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), None)
    if at is not None and argv[at] == "sweep":
        argv = sweep.sweep_show_argv(argv, at)  # `numlp sweep show DIR`
    if at is not None and argv[at] == "bench":
        args = parser.parse_args(argv[: at + 1])
        args.bench_args = argv[at + 1 :]
    else:
        args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from numlp.data.datasets import DataError
    from numlp.train import TrainingDiverged

    try:
        return args.handler(args)
    except BrokenPipeError:
        # The reader went away (`numlp ... | head`): not an error. Point stdout at /dev/null so
        # that Python's own flush at exit does not complain a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("numlp: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ImportError as err:  # an optional dependency; its message says what to install
        if args.debug:
            raise
        print(f"numlp: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (CLIError, DataError, ValueError, OSError, TrainingDiverged) as err:
        if args.debug:
            raise
        message = " ".join(str(err).split()) if not isinstance(err, OSError) else _os_error(err)
        print(f"numlp: error: {printable(as_flags(message))}", file=sys.stderr)
        return EXIT_USAGE


def as_flags(message: str) -> str:
    """Lower floors name a setting in backquotes (`data_dir`); the command line says its flag
    (--data-dir). Other backquoted words (commands) stay as they are."""
    return re.sub(
        r"`([a-z][a-z_]*)`",
        lambda m: "--" + m[1].replace("_", "-") if m[1] in FLAG_SETTINGS else m[0],
        message,
    )


# The settings lower floors name that are flags here (the training settings are too).
FLAG_SETTINGS = {"data_dir", "port", "host", "threads", "dataset", "out", "max_bytes"}


def _os_error(err: OSError) -> str:
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{err.strerror or err}"


if __name__ == "__main__":
    sys.exit(main())
