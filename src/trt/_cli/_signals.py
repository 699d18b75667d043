"""The stop signals from trt's first line on: recorded, never raised early.

A SIGINT that Python turns into KeyboardInterrupt while a C extension
initializes (msgspec, the first time trt imports it) can leave that module
half built, and the next use of it crashes the interpreter. So the
recorder takes the stop signals as soon as ``main()`` starts; a command
other than ``run`` gives them back once its imports are done, and a
signal that came meanwhile is raised again then, at a safe point.
``trt run`` keeps the recorder to its end (see trt._cli._run).
"""

from __future__ import annotations

# The C module underneath `signal`: importing `signal` itself (and enum with
# it) takes longer than the rest of trt's first imports, and signals that
# come meanwhile would raise.
TYPE_CHECKING = False  # not typing.TYPE_CHECKING: see _main.py
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal

# Ctrl-C, a service manager's stop, and a hangup (the terminal closed, the
# ssh session dropped), which would otherwise kill trt and leave every
# child, each in a process group of its own, running.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SignalRecorder:
    """Records the stop signals instead of acting on them."""

    def __init__(self) -> None:
        self.signals: list[int] = []
        self._before: dict[int, object] = {}
        # The stop signals trt acts on: those it was not started ignoring.
        # What the caller ignores (nohup; SIGINT in a background job) stays
        # ignored, as Python itself leaves it.
        self.watched: tuple[int, ...] = ()

    def install(self) -> SignalRecorder:
        """Become the handler of the stop signals; return self."""
        watched = []
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue
            self._before[signum] = signal.signal(signum, self._record)
            watched.append(signum)
        self.watched = tuple(watched)
        return self

    def release(self) -> None:
        """Put the earlier handlers back; raise a recorded signal again.

        The first signal recorded is sent again, so it now does what it
        would have done (KeyboardInterrupt for SIGINT, by default).
        """
        self.restore()
        if self.signals:
            signal.raise_signal(self.signals.pop(0))

    def restore(self) -> None:
        """Put the earlier handlers back, if they are not back already."""
        for signum, handler in self._before.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._before.clear()

    def ignore(self) -> None:
        """Ignore the stop signals for the rest of the process.

        For the end of ``trt run``: the interpreter puts the default
        handlers back while it shuts down, so a signal in trt's last
        milliseconds would otherwise kill it after all its work is done,
        with the wrong exit status.
        """
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        self._before.clear()

    def _record(self, signum: int, frame: object) -> None:
        self.signals.append(signum)
