"""trt's entry point: parse, dispatch, and map exceptions to exit codes.

This is the one place a traceback could reach the user, so it decides: bad
input becomes one clear message and exit code 2, a bug becomes one line
(the traceback only with --debug), Ctrl-C becomes one line and 130.
"""

from __future__ import annotations

import sys

# First, and light: main() installs the recorder before importing the rest.
from trt._cli._signals import SignalRecorder

# typing.TYPE_CHECKING would import typing, which the start-up budget of
# ``trt --help`` cannot afford; type checkers honor this name as-is.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

    from trt._exceptions import TrtError

# Exit code for a bug in trt itself (sysexits.h EX_SOFTWARE), kept apart
# from 1 so scripts never mistake a crash for a failed task.
INTERNAL_ERROR = 70


def entry() -> NoReturn:
    """The ``trt`` command: run :func:`main` and exit with its code."""
    _exit(main())


def _exit(code: int) -> NoReturn:
    """Exit with ``code``, skipping the interpreter's teardown if it can.

    Tearing down module by module and object by object takes about as long
    as trt's own start-up, and is only needed for code that might rely on
    it: a task's module imported here (files left unflushed) or a thread
    still running. Otherwise, once the streams are flushed and the atexit
    handlers have run, there is nothing left to do.
    """
    worker = sys.modules.get("trt._worker")
    threading = sys.modules.get("threading")
    if (worker is not None and worker.imported_task_code) or (
        threading is not None
        and any(
            not thread.daemon and thread is not threading.main_thread()
            for thread in threading.enumerate()
        )
    ):
        sys.exit(code)
    import atexit
    import os

    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    # The handlers the normal exit would run (logging's flush among them).
    atexit._run_exitfuncs()
    os._exit(code)


def _open_standard_fds() -> None:
    """Give a closed stdin, stdout or stderr /dev/null.

    Otherwise the next file trt opens (the state folder's lock) would take
    the lowest free descriptor, and task output and trt's messages written
    to 1 or 2 would land in it.
    """
    import os

    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)
            # As the standard descriptors always are, for the worker
            # processes of plain functions (os.open sets close-on-exec).
            os.set_inheritable(fd, True)
        if getattr(sys, name) is None:
            # Python made it None, finding the descriptor closed; task code
            # that prints must find a stream, as it would in a terminal.
            stream = open(fd, "r" if fd == 0 else "w", closefd=False)
            setattr(sys, name, stream)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the trt command line and return the process exit code."""
    recorder = SignalRecorder().install()
    _open_standard_fds()
    from trt._cli import _exit_codes
    from trt._cli._console import OutputError, err, out
    from trt._cli._options import command_help, overview, parse
    from trt._exceptions import TrtError

    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    try:
        command, options = parse(args)
        if options is None:
            recorder.release()
        if options is None and command == "version":
            from trt import __version__

            out(f"trt {__version__}\n")
            return _exit_codes.SUCCESS
        if options is None:
            text = overview() if command == "help" else command_help(command)
            out(text)
            return _exit_codes.SUCCESS
        from trt._cli import _commands

        return _commands.dispatch(command, options, recorder)
    except OutputError as exc:
        err(f"trt: error: {exc}\n")
        return _exit_codes.RUN_FAILED
    except TrtError as exc:
        err(f"trt: error: {exc}\n")
        return _exit_codes.USAGE_ERROR
    except KeyboardInterrupt:
        err("trt: interrupted\n")
        return _exit_codes.INTERRUPTED
    except BaseExceptionGroup as group:
        # Ctrl-C inside a running nursery arrives wrapped in a group, and
        # so does an error of trt's raised inside one (state that cannot
        # be saved before the first task starts).
        if group.subgroup(KeyboardInterrupt) is not None:
            err("trt: interrupted\n")
            return _exit_codes.INTERRUPTED
        ours, rest = group.split(TrtError)
        if ours is None or rest is not None:
            return _internal_error(group, debug)
        for leaf in _leaves(ours):
            err(f"trt: error: {leaf}\n")
        return _exit_codes.USAGE_ERROR
    except BrokenPipeError:
        # The reader of stdout went away (trt validate big.json | head):
        # what it did not read, it did not want.
        return _exit_codes.SUCCESS
    except Exception as exc:
        return _internal_error(exc, debug)
    finally:
        # Unless a command took them over (run ignores them at its end).
        recorder.restore()


def _leaves(group: BaseExceptionGroup[TrtError]) -> list[TrtError]:
    found: list[TrtError] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found += _leaves(exc)
        else:
            found.append(exc)
    return found


def _internal_error(exc: BaseException, debug: bool) -> int:
    """Report a bug in trt in one line (with the traceback under --debug)."""
    from trt._cli._console import err

    if debug:
        import traceback

        traceback.print_exception(exc)
    err(
        f"trt: internal error: {type(exc).__name__}: {exc}"
        " (run again with --debug for the traceback)\n"
    )
    return INTERNAL_ERROR
