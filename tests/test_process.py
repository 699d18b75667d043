"""Contract tests for command tasks, on real child processes."""

from __future__ import annotations

import os
import re
import select
import signal
import sys
import threading
import time
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing

import trt
import trt._process
import trt._spawn
from tests.conftest import WriteTasks, command

# Hang guard for tests that wait on real processes: generous, since CI
# machines are shared, but far below pytest's patience.
HANG_GUARD = 20


def make_context(sink: trt.OutputSink, attempt: int = 1) -> trt.AttemptContext:
    return trt.AttemptContext(
        attempt=attempt,
        output=sink,
        started_at="2026-01-01T00:00:00.000+00:00",
        started_clock=trio.current_time(),
        kill_grace=0.5,
    )


def load_one(write_tasks: WriteTasks, task: dict[str, object]) -> trt.Task:
    return trt.load_task_file(write_tasks(task)).tasks[0]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def reaped(pid: int) -> bool:
    """Tell whether ``pid`` is no child of ours left to wait for."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def gone_within(pid: int, seconds: float = 5.0) -> bool:
    """Tell whether ``pid`` has exited, or does so within ``seconds``.

    A process killed together with its group may still be dying when the
    call that killed it returns; its pidfd turns readable once it is gone.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([pidfd], [], [], seconds)
        return bool(readable)
    finally:
        os.close(pidfd)


@pytest.fixture(params=["thread", "loop"])
def spawn_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Spawn through libc in a helper thread, or os.posix_spawn on the loop."""
    if request.param == "thread" and not trt._spawn.HAVE_THREADED_SPAWN:
        pytest.skip("libc's posix_spawn is not reachable through ctypes here")
    if request.param == "loop":
        monkeypatch.setattr(trt._process, "HAVE_THREADED_SPAWN", False)
    return str(request.param)


async def wait_gone(pid: int) -> None:
    """Wait for any process (not only a child) to exit, via a pidfd."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        trio.lowlevel.notify_closing(pidfd)
        os.close(pidfd)


async def test_success_records_process_evidence(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, tmp_path: Path
) -> None:
    task = load_one(
        write_tasks, command("hello", "sh", "-c", "printf hello; printf oops >&2")
    )

    with trio.fail_after(HANG_GUARD):
        result = await trt.run_task(task, make_context(quiet_output))

    assert result.status == "success"
    assert result.error is None
    assert result.process is not None
    assert result.process.exit_code == 0
    assert result.process.signal is None
    assert result.process.pid is not None
    assert result.process.pid > 0
    assert (result.process.stdout_bytes, result.process.stderr_bytes) == (5, 4)
    assert (tmp_path / "stdout.txt").read_text() == "hello"
    assert (tmp_path / "stderr.txt").read_text() == "oops"
    assert result.elapsed_ms >= 0


async def test_non_zero_exit_keeps_the_code(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink
) -> None:
    task = load_one(write_tasks, command("three", "sh", "-c", "exit 3"))

    with trio.fail_after(HANG_GUARD):
        result = await trt.run_task(task, make_context(quiet_output))

    assert result.status == "failed"
    assert result.error == trt.TaskError(
        kind="non_zero_exit", message="sh exited with code 3"
    )
    assert result.process is not None
    assert result.process.exit_code == 3


async def test_death_by_signal_is_named(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink
) -> None:
    task = load_one(write_tasks, command("killed", "sh", "-c", "kill -KILL $$"))

    with trio.fail_after(HANG_GUARD):
        result = await trt.run_task(task, make_context(quiet_output))

    assert result.status == "failed"
    assert result.process is not None
    assert result.process.signal == "SIGKILL"
    assert result.process.exit_code is None
    assert result.error is not None
    assert result.error.message == "sh was killed by SIGKILL"


async def test_real_time_signal_is_named(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink
) -> None:
    number = signal.SIGRTMIN + 1
    task = load_one(write_tasks, command("rt", "sh", "-c", f"kill -{number} $$"))

    with trio.fail_after(HANG_GUARD):
        result = await trt.run_task(task, make_context(quiet_output))

    assert result.process is not None
    assert result.process.signal == "SIGRTMIN+1"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, r"^cannot start 'trt-no-such-program': No such file or directory$"),
        (
            {"cwd": "missing-folder"},
            r"^cannot enter working folder '.*missing-folder': "
            r"No such file or directory$",
        ),
    ],
    ids=["missing-program", "missing-cwd"],
)
async def test_spawn_error_is_data(
    write_tasks: WriteTasks,
    quiet_output: trt.OutputSink,
    fields: dict[str, str],
    message: str,
) -> None:
    program = "trt-no-such-program" if not fields else "true"
    task = load_one(write_tasks, command("nope", program, **fields))

    result = await trt.run_task(task, make_context(quiet_output))

    assert result.status == "failed"
    assert result.error is not None
    assert result.error.kind == "spawn_error"
    assert re.match(message, result.error.message), result.error.message
    assert result.process is not None
    assert result.process.pid is None


async def test_env_reaches_the_child_without_cwd(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, tmp_path: Path
) -> None:
    os.environ["TRT_TEST_INHERITED"] = "yes"
    try:
        task = load_one(
            write_tasks,
            command(
                "env",
                *("sh", "-c", 'printf "%s %s" "$GREETING" "$TRT_TEST_INHERITED"'),
                env={"GREETING": "hi"},
            ),
        )
        with trio.fail_after(HANG_GUARD):
            await trt.run_task(task, make_context(quiet_output))
    finally:
        del os.environ["TRT_TEST_INHERITED"]

    assert (tmp_path / "stdout.txt").read_text() == "hi yes"


async def test_cwd_and_env_reach_the_child(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, tmp_path: Path
) -> None:
    (tmp_path / "sub").mkdir()
    task = load_one(
        write_tasks,
        command(
            "where",
            "sh",
            "-c",
            'printf "%s %s" "$PWD" "$GREETING"',
            cwd="sub",
            env={"GREETING": "hi"},
        ),
    )

    with trio.fail_after(HANG_GUARD):
        await trt.run_task(task, make_context(quiet_output))

    assert (tmp_path / "stdout.txt").read_text() == f"{tmp_path / 'sub'} hi"


async def test_child_leads_its_own_process_group(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, tmp_path: Path
) -> None:
    task = load_one(write_tasks, command("group", "sh", "-c", "ps -o pgid= -p $$"))

    with trio.fail_after(HANG_GUARD):
        result = await trt.run_task(task, make_context(quiet_output))

    assert result.process is not None
    assert int((tmp_path / "stdout.txt").read_text()) == result.process.pid
    assert os.getpgid(0) != result.process.pid


@pytest.mark.parametrize("cwd", [None, "."], ids=["posix-spawn", "popen"])
async def test_child_gets_default_sigpipe(
    write_tasks: WriteTasks,
    quiet_output: trt.OutputSink,
    tmp_path: Path,
    cwd: str | None,
) -> None:
    """Python ignores SIGPIPE; the child must not inherit that."""
    fields = {"cwd": cwd} if cwd else {}
    script = command("sig", "sh", "-c", "grep SigIgn /proc/self/status", **fields)
    task = load_one(write_tasks, script)

    with trio.fail_after(HANG_GUARD):
        await trt.run_task(task, make_context(quiet_output))

    ignored = int((tmp_path / "stdout.txt").read_text().split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))


@pytest.mark.usefixtures("spawn_path")
async def test_spawn_paths_set_up_the_child_alike(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, tmp_path: Path
) -> None:
    """Signals, environment, group and stdin are the same either way."""
    script = (
        "grep -E '^Sig(Ign|Blk)' /proc/self/status | cut -f2; "
        'echo "$TRT_TASK_ID $TRT_ATTEMPT $GREETING"; '
        "ps -o pgid= -p $$; readlink /proc/self/fd/0"
    )
    env = {"GREETING": "hi"}
    task = load_one(write_tasks, command("alike", "sh", "-c", script, env=env))

    with trio.fail_after(HANG_GUARD):
        result = await trt.run_task(task, make_context(quiet_output, attempt=2))

    assert result.process is not None
    blocked, ignored, names, group, stdin = (
        (tmp_path / "stdout.txt").read_text().splitlines()
    )
    assert int(blocked, 16) == 0
    assert not int(ignored, 16) & (1 << (signal.SIGPIPE - 1))
    assert not int(ignored, 16) & (1 << (signal.SIGXFSZ - 1))
    assert names == "alike 2 hi"
    assert int(group) == result.process.pid
    assert stdin == os.devnull


@pytest.mark.usefixtures("spawn_path")
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"argv": ("true", "a\0b")}, "cannot start: embedded null byte"),
        ({"env": {"A": "a\0b"}}, "cannot start: embedded null byte"),
        ({"env": {"A=B": "x"}}, "cannot start: illegal environment variable name"),
    ],
    ids=["argv-nul", "env-value-nul", "env-name-equals"],
)
async def test_strings_c_cannot_carry_are_spawn_errors(
    write_tasks: WriteTasks,
    quiet_output: trt.OutputSink,
    fields: dict[str, object],
    message: str,
) -> None:
    """Such a task file cannot be loaded, but a task can be built in code."""
    task = msgspec.structs.replace(
        load_one(write_tasks, command("c", "true")), **fields
    )

    result = await trt.run_task(task, make_context(quiet_output))

    assert result.error == trt.TaskError(kind="spawn_error", message=message)
    assert result.process is not None
    assert result.process.pid is None


@pytest.mark.usefixtures("spawn_path")
async def test_attempt_canceled_before_spawn_still_ends_its_child(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink
) -> None:
    """The spawn goes ahead, and the child is terminated and reaped."""
    task = load_one(write_tasks, command("early", "sleep", "300"))
    context = make_context(quiet_output)

    with trio.fail_after(HANG_GUARD), trio.CancelScope() as scope:
        scope.cancel()
        await trt.run_task(task, context)

    assert scope.cancelled_caught
    assert context.probe.pid is not None
    assert context.probe.terminated_with == "SIGTERM"
    assert context.probe.signal == "SIGTERM"
    assert reaped(context.probe.pid)


@pytest.mark.skipif(
    not trt._spawn.HAVE_THREADED_SPAWN, reason="no threaded spawn to hold"
)
async def test_cancel_during_threaded_spawn_still_ends_the_child(
    write_tasks: WriteTasks,
    quiet_output: trt.OutputSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cancel that lands while the thread spawns waits for the pid."""
    libc = trt._spawn._libc
    assert libc is not None
    entered = threading.Event()
    release = threading.Event()
    real_spawn = libc.spawn

    def held_spawn(*args: object) -> int:
        entered.set()
        release.wait(HANG_GUARD)
        return int(real_spawn(*args))

    monkeypatch.setattr(libc, "spawn", held_spawn)
    task = load_one(write_tasks, command("held", "sleep", "300"))
    context = make_context(quiet_output)
    scope = trio.CancelScope()

    async def attempt() -> None:
        with scope:
            await trt.run_task(task, context)

    with trio.fail_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(attempt)
            await trio.to_thread.run_sync(entered.wait, HANG_GUARD)
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert context.probe.pid is None
            release.set()

    assert scope.cancelled_caught
    assert context.probe.pid is not None
    assert context.probe.terminated_with == "SIGTERM"
    assert reaped(context.probe.pid)


async def test_both_pipes_drain_together(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, tmp_path: Path
) -> None:
    """Neither pipe may stall the other, whichever fills first."""
    script = "head -c 3000000 /dev/zero & head -c 1000000 /dev/zero >&2; wait"
    task = load_one(write_tasks, command("both", "sh", "-c", script))

    with trio.fail_after(HANG_GUARD):
        result = await trt.run_task(task, make_context(quiet_output))

    assert result.status == "success"
    assert result.process is not None
    assert (result.process.stdout_bytes, result.process.stderr_bytes) == (
        3_000_000,
        1_000_000,
    )
    assert (tmp_path / "stdout.txt").stat().st_size == 3_000_000
    assert (tmp_path / "stderr.txt").stat().st_size == 1_000_000


async def test_large_output_is_counted_not_kept(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, tmp_path: Path
) -> None:
    size = 20 * 1024 * 1024
    task = load_one(write_tasks, command("big", "head", "-c", str(size), "/dev/zero"))

    with trio.fail_after(HANG_GUARD):
        result = await trt.run_task(task, make_context(quiet_output))

    assert result.process is not None
    assert result.process.stdout_bytes == size
    assert (tmp_path / "stdout.txt").stat().st_size == size


async def test_strays_left_in_the_group_are_killed(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, tmp_path: Path
) -> None:
    """A background child that closed its pipes must not outlive the task."""
    script = "sleep 300 >/dev/null 2>&1 & echo $!"
    task = load_one(write_tasks, command("stray", "sh", "-c", script))

    with trio.fail_after(HANG_GUARD):
        await trt.run_task(task, make_context(quiet_output))

    stray = int((tmp_path / "stdout.txt").read_text())
    with trio.fail_after(HANG_GUARD):
        await wait_gone(stray)


async def test_cancellation_terminates_the_whole_group(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, tmp_path: Path
) -> None:
    marker = tmp_path / "pids"
    script = f"sleep 300 & echo $! > {marker}; echo $$ >> {marker}; wait"
    task = load_one(write_tasks, command("tree", "sh", "-c", script))
    context = make_context(quiet_output)

    with trio.fail_after(HANG_GUARD):
        with trio.move_on_after(0.5):
            await trt.run_task(task, context)

    pids = [int(line) for line in marker.read_text().split()]
    assert all(gone_within(pid) for pid in pids)
    assert context.probe.terminated_with == "SIGTERM"


async def test_sigterm_ignoring_child_gets_sigkill_after_grace(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    code = (
        "import signal, time, pathlib, sys; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"pathlib.Path({str(ready)!r}).touch(); time.sleep(300)"
    )
    task = load_one(write_tasks, command("stubborn", sys.executable, "-c", code))
    context = make_context(quiet_output)

    async def cancel_when_ready(scope: trio.CancelScope) -> None:
        # The marker is written by another process: there is no event to
        # wait on, so poll.
        while not ready.exists():  # noqa: ASYNC110
            await trio.sleep(0.01)
        scope.cancel()

    with trio.fail_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as scope:
                nursery.start_soon(cancel_when_ready, scope)
                await trt.run_task(task, context)

    assert context.probe.terminated_with == "SIGKILL"
    assert context.probe.signal == "SIGKILL"
    assert context.probe.pid is not None
    assert not pid_alive(context.probe.pid)


async def test_tagged_output_prefixes_every_line(tmp_path: Path) -> None:
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    sink = trt.OutputSink(prefix=True, stdout_fd=out, stderr_fd=out)
    writer = sink.stream("job", "stdout")

    writer.feed(b"one\ntw")
    writer.feed(b"o\nthree")
    writer.close()
    os.close(out)

    assert (tmp_path / "out").read_bytes() == b"[job] one\n[job] two\n[job] three\n"


def test_sink_survives_a_closed_reader() -> None:
    read, write = os.pipe()
    os.close(read)
    previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        sink = trt.OutputSink(prefix=False, stdout_fd=write, stderr_fd=write)
        sink.stream("job", "stdout").feed(b"nobody listens\n")
        sink.stream("job", "stdout").feed(b"still fine\n")
    finally:
        signal.signal(signal.SIGPIPE, previous)
        os.close(write)


async def test_timed_out_partial_line_is_still_shown(
    write_tasks: WriteTasks, tmp_path: Path
) -> None:
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    sink = trt.OutputSink(prefix=True, stdout_fd=out, stderr_fd=out)
    task = load_one(
        write_tasks, command("slow", "sh", "-c", "printf no-newline; sleep 300")
    )
    context = make_context(sink)

    with trio.fail_after(HANG_GUARD), trio.move_on_after(0.5):
        await trt.run_task(task, context)
    os.close(out)

    assert (tmp_path / "out").read_bytes() == b"[slow] no-newline\n"
    assert context.probe.terminated_with == "SIGTERM"


def test_sink_waits_on_a_non_blocking_reader() -> None:
    """A full non-blocking pipe makes the sink wait, not drop output."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(read, 4096):
            received.extend(chunk)
            time.sleep(0.0005)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        sink = trt.OutputSink(prefix=False, stdout_fd=write, stderr_fd=write)
        sink.stream("job", "stdout").feed(b"x" * 1_000_000)
    finally:
        os.close(write)
        reader.join()
        os.close(read)

    assert len(received) == 1_000_000
