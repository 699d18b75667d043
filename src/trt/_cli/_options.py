"""Parse the command line into a command name and its options.

argparse does the parsing; this module only makes its failures fit trt's
contract (one line on stderr naming the flag and the value, exit code 2)
and keeps the overview text short. It must stay import-light: ``trt
--help`` imports neither trio nor msgspec.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import NoReturn

from trt._exceptions import UsageError

COMMANDS = ("run", "validate", "schema")

OVERVIEW = """\
trt - run a file of tasks with dependencies, limits and reports

usage:
  trt run FILE [flags]     run a task file (also: trt FILE [flags])
  trt validate FILE        check a task file; print its task count and ids
  trt schema               print the task file's JSON Schema
  trt --help               show this overview (trt run --help: run's flags)

run flags:
  --concurrency N          attempts running at once (default 1)
  --timeout MS             per-attempt deadline for tasks without timeoutMs
  --kill-grace MS          wait between SIGTERM and SIGKILL (default 2000)
  --reports-dir DIR        where reports go (default reports)
  --debug                  show a traceback for internal errors

exit codes: 0 success, 1 run failed, 2 usage or task-file error,
            130/143 interrupted by SIGINT/SIGTERM
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors become UsageError, not sys.exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(_rephrase(message))


def _rephrase(message: str) -> str:
    """Reword argparse's messages into trt's 'flag: problem' form."""
    if message.startswith("argument "):
        flag, _, rest = message.removeprefix("argument ").partition(": ")
        flag = flag.split("/")[-1]
        if rest == "expected one argument":
            rest = "missing value"
        return f"{flag}: {rest}"
    return message


def _int_flag(minimum: int) -> Callable[[str], int]:
    """Return a converter accepting whole numbers of at least ``minimum``."""
    noun = "a positive integer" if minimum == 1 else "a whole number >= 0"

    def convert(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            value = None
        if value is None or value < minimum:
            message = f"expected {noun}, got {text!r}"
            raise argparse.ArgumentTypeError(message)
        return value

    return convert


def _run_parser() -> _Parser:
    parser = _Parser(
        prog="trt run",
        description="Run the tasks in FILE and write reports/latest.json.",
        allow_abbrev=False,
    )
    parser.add_argument("file", metavar="FILE", help="task file (.json or .toml)")
    parser.add_argument(
        "--concurrency",
        type=_int_flag(1),
        default=1,
        metavar="N",
        help="attempts running at once (default 1)",
    )
    parser.add_argument(
        "--timeout",
        type=_int_flag(1),
        default=None,
        metavar="MS",
        help="per-attempt deadline for tasks without timeoutMs",
    )
    parser.add_argument(
        "--kill-grace",
        type=_int_flag(0),
        default=2000,
        metavar="MS",
        help="wait between SIGTERM and SIGKILL (default 2000)",
    )
    parser.add_argument(
        "--reports-dir",
        default="reports",
        metavar="DIR",
        help="where reports are written (default reports)",
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks for bugs")
    return parser


def _file_parser(prog: str, description: str) -> _Parser:
    parser = _Parser(prog=prog, description=description, allow_abbrev=False)
    parser.add_argument("file", metavar="FILE", help="task file (.json or .toml)")
    parser.add_argument("--debug", action="store_true", help="tracebacks for bugs")
    return parser


def _schema_parser() -> _Parser:
    parser = _Parser(
        prog="trt schema",
        description="Print the JSON Schema of trt task files.",
        allow_abbrev=False,
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks for bugs")
    return parser


_PARSERS: dict[str, Callable[[], _Parser]] = {
    "run": _run_parser,
    "validate": lambda: _file_parser(
        "trt validate", "Check a task file and print its task count and ids."
    ),
    "schema": _schema_parser,
}


def parse(argv: Sequence[str]) -> tuple[str, argparse.Namespace | None]:
    """Split ``argv`` into a command and its parsed options.

    Returns ``("help", None)`` for the overview. ``trt FILE`` is ``trt run
    FILE``.

    Raises:
        UsageError: for an unknown flag, a missing or bad value, or a
            missing FILE; the message is one line naming the flag.
    """
    args = list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        return "help", None
    command = args[0]
    if command in COMMANDS:
        args = args[1:]
    elif command.startswith("-"):
        message = f"unknown flag {command!r} (try: trt --help)"
        raise UsageError(message)
    else:
        command = "run"
    parser = _PARSERS[command]()
    namespace, extras = parser.parse_known_args(args)
    for extra in extras:
        if extra.startswith("-"):
            message = f"unknown flag {extra.split('=')[0]!r} for trt {command}"
        else:
            message = f"unexpected argument {extra!r} for trt {command}"
        raise UsageError(message)
    return command, namespace
