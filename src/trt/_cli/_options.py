"""Parse the command line into a command name and its options.

A small table-driven parser rather than argparse: trt's contract (one line
on stderr naming the flag and the value, exit code 2; the first positional
is the file; ``--help`` wins before anything is read) is easier to state
directly than to bend argparse into, and ``trt validate`` is measured
against bare interpreter start-up, where argparse's imports alone cost
several milliseconds. This module imports neither trio nor msgspec.
"""

from __future__ import annotations

from trt._exceptions import UsageError

# typing.TYPE_CHECKING would import typing, which the start-up budget of
# ``trt --help`` cannot afford; type checkers honor this name as-is.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

OVERVIEW = """\
trt - run a file of tasks with dependencies, limits and reports

usage:
  trt run FILE [flags]     run a task file (also: trt FILE [flags])
  trt validate FILE        check a task file; print its task count and ids
  trt status [--json]      show the saved run's status (also: trt run --status)
  trt schema               print the task file's JSON Schema
  trt bench [--quick]      run the benchmark; write reports/bench.json,
                           reports/task-runtime.md and its .svg chart
  trt --help               show this overview (trt run --help: run's flags)
  trt --version            print trt's version

run flags:
{run_flags}
exit codes: 0 success, 1 run failed or was stopped, 2 usage, task-file or
            state error, 70 internal error, 130/143/129 a second SIGINT/SIGTERM/SIGHUP
            forced the exit
"""


class Options:
    """Parsed options of any command; unused ones keep their defaults."""

    def __init__(self) -> None:
        self.file: str | None = None
        self.concurrency = 1
        self.mode = "allSettled"
        self.timeout: int | None = None
        self.cancel_after: int | None = None
        self.kill_grace = 2000
        self.reports_dir = "reports"
        self.log_events: str | None = None
        self.progress = False
        self.state_dir = "state"
        self.resume = False
        self.shutdown = "cancel"
        self.status = False
        self.json = False
        self.quick = False
        self.debug = False
        # The dests of flags given on the command line, so that --resume
        # can tell a chosen value from a default.
        self.given: set[str] = set()

    def __repr__(self) -> str:
        return f"Options({vars(self)!r})"


def _whole_number(minimum: int, maximum: int) -> Callable[[str], int]:
    """Return a converter accepting integers from ``minimum`` to ``maximum``."""
    noun = "a positive integer" if minimum == 1 else "a whole number >= 0"

    def convert(text: str) -> int:
        shown = repr(text if len(text) <= 20 else text[:20] + "...")
        # Plain ASCII digits only: int() would also take " 5", "5_0", "+5"
        # and digits of other scripts.
        if not (text.isascii() and text.isdigit()):
            message = f"expected {noun}, got {shown}"
            raise ValueError(message)
        # Length first, so a thousand-digit value never reaches int().
        if len(text.lstrip("0")) > 15 or int(text) > maximum:
            message = f"at most {maximum} allowed, got {shown}"
            raise ValueError(message)
        if int(text) < minimum:
            message = f"expected {noun}, got {shown}"
            raise ValueError(message)
        return int(text)

    return convert


# The run modes, as trt._modes.MODES (a test keeps the two equal); spelled
# out here so that parsing flags imports nothing.
MODE_CHOICES = ("allSettled", "all", "race", "any")

# As trt._shutdown.SHUTDOWN_MODES, for the same reason.
SHUTDOWN_CHOICES = ("cancel", "drain")


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    """Return a converter accepting one of ``choices`` exactly."""

    def convert(text: str) -> str:
        if text not in choices:
            message = f"expected one of {', '.join(choices)}; got {text!r}"
            raise ValueError(message)
        return text

    return convert


# Bounds that keep the arithmetic finite and the numbers meaningful: a year
# for a time in milliseconds, and far more attempts at once than one
# machine's file descriptors allow.
MAX_MS = 365 * 24 * 3600 * 1000
MAX_CONCURRENCY = 100_000


class Flag:
    """One ``--name VALUE`` (or ``--name``) flag and where its value goes."""

    def __init__(
        self,
        name: str,
        help: str,
        *,
        dest: str,
        metavar: str = "",
        convert: Callable[[str], object] = str,
        bare: object = None,
    ) -> None:
        self.name = name
        self.help = help
        self.dest = dest
        self.metavar = metavar
        self.convert = convert
        # For a flag whose value is optional (--flag or --flag=VALUE): what
        # the bare form means. None: a value is required, if any is taken.
        self.bare = bare

    @property
    def takes_value(self) -> bool:
        """Tell whether the flag needs a value."""
        return bool(self.metavar)

    def usage(self) -> str:
        """Return the flag's line in help texts."""
        if self.bare is not None:
            left = f"{self.name}[={self.metavar}]"
        else:
            left = f"{self.name} {self.metavar}".rstrip()
        return f"  {left:<23}  {self.help}"


_DEBUG = Flag("--debug", "show a traceback for internal errors", dest="debug")
_STATE_DIR = Flag(
    "--state-dir",
    "where the run's state is kept (default state)",
    dest="state_dir",
    metavar="DIR",
)
_JSON = Flag("--json", "with --status: print the status as JSON", dest="json")

FLAGS: dict[str, tuple[Flag, ...]] = {
    "run": (
        Flag(
            "--concurrency",
            "attempts running at once (default 1)",
            dest="concurrency",
            metavar="N",
            convert=_whole_number(1, MAX_CONCURRENCY),
        ),
        Flag(
            "--mode",
            "allSettled (default), all, race or any: when the run settles",
            dest="mode",
            metavar="MODE",
            convert=_choice(MODE_CHOICES),
        ),
        Flag(
            "--timeout",
            "per-attempt deadline for tasks without timeoutMs",
            dest="timeout",
            metavar="MS",
            convert=_whole_number(1, MAX_MS),
        ),
        Flag(
            "--cancel-after",
            "cancel the whole run after MS milliseconds",
            dest="cancel_after",
            metavar="MS",
            convert=_whole_number(1, MAX_MS),
        ),
        Flag(
            "--kill-grace",
            "wait between SIGTERM and SIGKILL (default 2000)",
            dest="kill_grace",
            metavar="MS",
            convert=_whole_number(0, MAX_MS),
        ),
        Flag(
            "--progress",
            "show live progress on stderr (plain lines when not a terminal)",
            dest="progress",
        ),
        Flag(
            "--log-events",
            "print every event as a JSON line (to stderr, or to FILE)",
            dest="log_events",
            metavar="FILE",
            bare="-",
        ),
        Flag(
            "--reports-dir",
            "where reports go (default reports)",
            dest="reports_dir",
            metavar="DIR",
        ),
        Flag(
            "--shutdown",
            "on SIGINT/SIGTERM/SIGHUP: cancel (default) or drain running tasks",
            dest="shutdown",
            metavar="MODE",
            convert=_choice(SHUTDOWN_CHOICES),
        ),
        Flag(
            "--resume",
            "continue the saved run of FILE: keep its successes",
            dest="resume",
        ),
        _STATE_DIR,
        Flag(
            "--status",
            "show the saved run's status and exit (FILE optional)",
            dest="status",
        ),
        _JSON,
        _DEBUG,
    ),
    "status": (
        _STATE_DIR,
        Flag("--json", "print the status as one JSON object", dest="json"),
        _DEBUG,
    ),
    "bench": (
        Flag("--quick", "a short run (under 30 s) for CI", dest="quick"),
        Flag(
            "--reports-dir",
            "where reports go (default reports)",
            dest="reports_dir",
            metavar="DIR",
        ),
        _DEBUG,
    ),
    "validate": (_DEBUG,),
    "schema": (_DEBUG,),
}

# Commands that take the task file as their one positional argument.
TAKES_FILE = frozenset({"run", "validate"})

SUMMARIES = {
    "run": "usage: trt run FILE [flags]\n\nRun the tasks in FILE.",
    "validate": (
        "usage: trt validate FILE\n\n"
        "Check FILE and print its task count and ids; exit 2 if it is invalid."
    ),
    "schema": "usage: trt schema\n\nPrint the JSON Schema of trt task files.",
    "bench": (
        "usage: trt bench [--quick] [--reports-dir DIR]\n\n"
        "Run the benchmark scenarios and their baselines; write bench.json,\n"
        "task-runtime.md and task-runtime.svg to the reports folder."
    ),
    "status": (
        "usage: trt status [--json] [--state-dir DIR]\n\n"
        "Show the saved run: its id, task file, status, times and counts per\n"
        "task status. Starts nothing; exit 2 when there is no readable state."
    ),
}


def overview() -> str:
    """Return the text ``trt`` and ``trt --help`` print."""
    lines = "\n".join(flag.usage() for flag in FLAGS["run"])
    return OVERVIEW.format(run_flags=lines + "\n")


def command_help(command: str) -> str:
    """Return the text ``trt COMMAND --help`` prints."""
    lines = [
        SUMMARIES[command],
        "",
        "flags:",
        "  -h, --help               show this help",
    ]
    lines += [flag.usage() for flag in FLAGS[command]]
    return "\n".join(lines) + "\n"


def parse(argv: Sequence[str]) -> tuple[str, Options | None]:
    """Split ``argv`` into a command and its options.

    Returns ``("help", None)`` for the overview and ``(COMMAND, None)``
    when ``COMMAND --help`` was asked. ``trt FILE`` is ``trt run FILE``.

    Raises:
        UsageError: for an unknown flag, a missing or bad value, a missing
            FILE or an extra argument; the message is one line.
    """
    args = list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        return "help", None
    if "--version" in args:
        return "version", None
    command = args[0]
    run_flags = {flag.name for flag in FLAGS["run"]}
    if command in FLAGS:
        args = args[1:]
    elif command == "--":
        command = "run"
    elif command.startswith("-") and command.partition("=")[0] not in run_flags:
        message = f"unknown flag {command!r} (try: trt --help)"
        raise UsageError(message)
    else:
        # trt FILE [flags], with flags before or after the file.
        _refuse_typo(command, args[1:])
        command = "run"
    # --help wins wherever it stands, before any value is judged.
    if "-h" in args or "--help" in args:
        return command, None
    return command, _parse_flags(command, args)


def _refuse_typo(word: str, rest: list[str]) -> None:
    """Refuse a mistyped command rather than reading it as a file name."""
    import os

    if word.startswith("-") or os.path.exists(word):
        return
    import difflib

    close = difflib.get_close_matches(word, list(FLAGS), n=1, cutoff=0.6)
    if close:
        message = f"unknown command {word!r}; did you mean 'trt {close[0]}'?"
        raise UsageError(message)
    looks_like_a_name = "." not in word and os.sep not in word
    if looks_like_a_name and _positionals(rest):
        # Two words and the first is no file: most likely a wrong command.
        commands = ", ".join(FLAGS)
        message = f"unknown command {word!r} (commands: {commands})"
        raise UsageError(message)


def _positionals(args: list[str]) -> list[str]:
    """Return the arguments of ``trt run`` that are not flags or values."""
    takes_value = {flag.name for flag in FLAGS["run"] if flag.takes_value}
    found: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = arg in takes_value
        else:
            found.append(arg)
    return found


def _parse_flags(command: str, args: list[str]) -> Options:
    options = Options()
    known = {flag.name: flag for flag in FLAGS[command]}
    positionals: list[str] = []
    # Words right after a flag whose value is optional: when one is too
    # many, the user most likely meant --flag=WORD.
    after_bare: dict[int, str] = {}
    extra_positions: list[int] = []
    position = 0
    while position < len(args):
        arg = args[position]
        position += 1
        if arg == "--":
            positionals += args[position:]
            break
        if not arg.startswith("-") or arg == "-":
            positionals.append(arg)
            extra_positions.append(position - 1)
            continue
        name, has_inline, inline = arg.partition("=")
        flag = known.get(name)
        if flag is None:
            message = f"unknown flag {name!r} for trt {command}"
            raise UsageError(message)
        options.given.add(flag.dest)
        if flag.bare is not None and not has_inline:
            setattr(options, flag.dest, flag.bare)
            if position < len(args) and not args[position].startswith("-"):
                after_bare[position] = name
            continue
        if not flag.takes_value:
            if has_inline:
                message = f"{name}: takes no value, got {inline!r}"
                raise UsageError(message)
            setattr(options, flag.dest, True)
            continue
        if has_inline:
            text = inline
        elif position < len(args) and args[position].partition("=")[0] not in known:
            text = args[position]
            position += 1
        else:
            # Nothing follows, or the next word is another flag: a value
            # such as "--reports-dir --concurrency" is a forgotten value.
            message = f"{name}: missing value"
            raise UsageError(message)
        try:
            setattr(options, flag.dest, flag.convert(text))
        except ValueError as exc:
            message = f"{name}: {exc}"
            raise UsageError(message) from None

    if command in TAKES_FILE and not (command == "run" and options.status):
        if not positionals:
            message = f"trt {command}: missing FILE (the task file to read)"
            raise UsageError(message)
    if command in TAKES_FILE and positionals:
        options.file = positionals.pop(0)
    if command == "run" and options.json and not options.status:
        message = "--json: only with --status (trt status --json)"
        raise UsageError(message)
    if command == "run" and options.status:
        extra = sorted(options.given - {"status", "json", "state_dir", "debug"})
        if extra:
            name = "--" + extra[0].replace("_", "-")
            message = f"--status shows the saved run; it takes no {name}"
            raise UsageError(message)
    if positionals:
        for index in extra_positions:
            if index in after_bare:
                flag_name = after_bare[index]
                message = (
                    f"{flag_name} takes its value as {flag_name}=VALUE; "
                    f"got a separate {args[index]!r}"
                )
                raise UsageError(message)
        message = f"unexpected argument {positionals[0]!r} for trt {command}"
        raise UsageError(message)
    return options
