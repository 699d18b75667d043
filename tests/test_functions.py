"""Contract tests for function tasks, with real modules on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trt
from tests.conftest import WriteTasks, function, run_cli
from tests.test_process import gone_within, make_context

JOBS = """
import threading
import trio

seen = []

def record(context):
    import json, os, pathlib
    out = pathlib.Path(__file__).with_name("record.json")
    data = [context.task_id, context.attempt, dict(context.metadata), os.getpid()]
    out.write_text(json.dumps(data))

def spin_forever(context):
    import os, pathlib
    pathlib.Path(__file__).with_name("spinner.pid").write_text(str(os.getpid()))
    while True:
        pass

async def record_async(context):
    await trio.sleep(0)
    seen.append((context.task_id, context.attempt, dict(context.metadata)))

def raise_now(context):
    raise KeyError("missing")

async def raise_later(context):
    await trio.sleep(0)
    raise RuntimeError("later")

def returns_awaitable(context):
    return raise_later(context)

async def interrupt_async(context):
    await trio.sleep(0)
    raise KeyboardInterrupt

async def stray_cancel(context):
    # A buggy task re-raises a Cancelled that its own, finished scope
    # caught: nothing around the attempt asked for it.
    caught = []
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.sleep(1)
        except trio.Cancelled as exc:
            caught.append(exc)
            raise
    raise caught[0]

async def forever(context):
    await trio.sleep_forever()

NOT_CALLABLE = 3

class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("no text for you")

def bad_str(context):
    raise BadStr()

def interrupt(context):
    raise KeyboardInterrupt

def hard_exit(context):
    import os
    os._exit(3)
"""


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.py"
    path.write_text(JOBS)
    return path


async def run_export(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, export: str, **fields: object
) -> trt.AttemptResult:
    graph = trt.load_task_file(write_tasks(function("f", "jobs.py", export, **fields)))
    with trio.fail_after(10):
        return await trt.run_task(graph.tasks[0], make_context(quiet_output, attempt=2))


async def test_sync_function_runs_in_a_worker_with_a_context(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, jobs: Path
) -> None:
    result = await run_export(write_tasks, quiet_output, "record", metadata={"k": 1})

    assert result.status == "success"
    assert result.process is None
    task_id, attempt, metadata, pid = json.loads(
        jobs.with_name("record.json").read_text()
    )
    assert (task_id, attempt, metadata) == ("f", 2, {"k": 1})
    assert pid != os.getpid()


async def test_sync_function_that_never_returns_is_killed(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, jobs: Path
) -> None:
    """A timeout ends a busy sync function for real, not just trt's wait."""
    graph = trt.load_task_file(write_tasks(function("f", "jobs.py", "spin_forever")))
    marker = jobs.with_name("spinner.pid")

    with trio.fail_after(30):
        with trio.move_on_after(3):
            await trt.run_task(graph.tasks[0], make_context(quiet_output))

    assert gone_within(int(marker.read_text()))


async def test_async_function_runs_on_the_loop(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, jobs: Path
) -> None:
    result = await run_export(write_tasks, quiet_output, "record_async")

    assert result.status == "success"


@pytest.mark.parametrize(
    ("export", "kind", "message"),
    [
        ("raise_now", "thrown", "KeyError: 'missing'"),
        ("raise_later", "rejected", "RuntimeError: later"),
        ("returns_awaitable", "rejected", "RuntimeError: later"),
        ("absent", "spawn_error", "module 'jobs.py' has no attribute 'absent'"),
        ("bad_str", "thrown", "BadStr: <str() of this BadStr raised>"),
        ("interrupt", "thrown", "KeyboardInterrupt"),
        (
            "hard_exit",
            "thrown",
            "the worker process running the function died with exit code 3",
        ),
        (
            "NOT_CALLABLE",
            "spawn_error",
            "jobs.py:NOT_CALLABLE is a int, not a callable",
        ),
    ],
    ids=[
        "sync-raises",
        "async-raises",
        "sync-returns-failing-awaitable",
        "missing-export",
        "bad-str",
        "keyboard-interrupt-in-worker",
        "worker-exits",
        "not-callable",
    ],
)
async def test_failure_kinds(
    write_tasks: WriteTasks,
    quiet_output: trt.OutputSink,
    jobs: Path,
    export: str,
    kind: str,
    message: str,
) -> None:
    result = await run_export(write_tasks, quiet_output, export)

    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.kind, result.error.message) == (kind, message)


async def test_a_cancellation_nothing_asked_for_is_the_tasks_failure(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, jobs: Path
) -> None:
    try:
        result = await run_export(write_tasks, quiet_output, "stray_cancel")
    except trio.Cancelled:
        # Escaping, it would end the run with tasks left running.
        pytest.fail("the stray Cancelled escaped the attempt")

    assert result.status == "failed"
    assert result.error is not None
    assert result.error.kind == "rejected"
    assert result.error.message.startswith("Cancelled")


def test_an_async_task_raising_keyboard_interrupt_fails_alone(
    write_tasks: WriteTasks, jobs: Path, tmp_path: Path
) -> None:
    # Under trt run, SIGINT goes to trt's receiver, so a KeyboardInterrupt
    # is the task's own: a failure, not a stop of the whole run.
    path = write_tasks(
        function("interrupts", "jobs.py", "interrupt_async"),
        {"id": "after", "type": "command", "command": "true"},
    )

    done = run_cli(
        "run", str(path),
        "--reports-dir", str(tmp_path / "r"), "--state-dir", str(tmp_path / "s"),
    )  # fmt: skip

    assert done.returncode == 1, done.stderr
    assert "interrupts: failed: KeyboardInterrupt" in done.stderr
    report = json.loads((tmp_path / "r" / "latest.json").read_text())
    statuses = {task["id"]: task["status"] for task in report["tasks"]}
    assert statuses == {"interrupts": "failed", "after": "success"}


async def test_stack_shows_the_users_frame_only(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, jobs: Path
) -> None:
    result = await run_export(write_tasks, quiet_output, "raise_later")

    assert result.error is not None
    assert result.error.stack is not None
    stack = result.error.stack
    assert f'File "{jobs}"' in stack
    assert "trio" not in stack.replace("trio.sleep", "")
    assert stack.endswith("RuntimeError: later\n")


async def test_import_error_is_a_spawn_error(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, tmp_path: Path
) -> None:
    (tmp_path / "jobs.py").write_text("raise ImportError('broken module')\n")

    result = await run_export(write_tasks, quiet_output, "anything")

    assert result.error is not None
    assert result.error.kind == "spawn_error"
    assert result.error.message == "cannot import 'jobs.py': ImportError: broken module"


async def test_dotted_module_is_imported(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink
) -> None:
    path = write_tasks(function("f", "tests.fixture_jobs", "succeed"))
    graph = trt.load_task_file(path)

    result = await trt.run_task(graph.tasks[0], make_context(quiet_output))

    assert result.status == "success"


async def test_dotted_module_beside_the_task_file_is_found(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, tmp_path: Path
) -> None:
    (tmp_path / "sidejobs_for_trt_test.py").write_text(
        "def go(context):\n    return 1\n"
    )
    path = write_tasks(function("f", "sidejobs_for_trt_test", "go"))
    graph = trt.load_task_file(path)

    result = await trt.run_task(graph.tasks[0], make_context(quiet_output))

    assert result.status == "success"


async def test_cancel_reaches_async_function(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, jobs: Path
) -> None:
    graph = trt.load_task_file(
        write_tasks(
            function("load", "jobs.py", "record"),
            function("f", "jobs.py", "forever"),
        )
    )
    with trio.fail_after(10):
        await trt.run_task(graph.tasks[0], make_context(quiet_output))
    context = make_context(quiet_output)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trt.run_task, graph.tasks[1], context)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()

    assert context.task_context is not None
    assert context.task_context.cancel_requested


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("import sys\ndef f(context):\n    sys.exit(3)\n", "SystemExit: 3"),
        (
            "import sys\nasync def f(context):\n    sys.exit(0)\n",
            "SystemExit: 0",
        ),
        ("def f(context):\n    raise GeneratorExit\n", "GeneratorExit"),
    ],
    ids=["sync-exit", "async-exit", "generator-exit"],
)
async def test_base_exceptions_fail_only_the_task(
    write_tasks: WriteTasks,
    quiet_output: trt.OutputSink,
    tmp_path: Path,
    body: str,
    message: str,
) -> None:
    (tmp_path / "exits.py").write_text(body)
    graph = trt.load_task_file(write_tasks(function("f", "exits.py", "f")))

    with trio.fail_after(10):
        result = await trt.run_task(graph.tasks[0], make_context(quiet_output))

    assert result.error is not None
    assert result.error.message == message


async def test_exit_at_import_is_a_spawn_error(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, tmp_path: Path
) -> None:
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(7)\n")
    graph = trt.load_task_file(write_tasks(function("f", "exits_on_import.py", "f")))

    with trio.fail_after(10):
        result = await trt.run_task(graph.tasks[0], make_context(quiet_output))

    assert result.error is not None
    assert result.error.kind == "spawn_error"
    assert result.error.message == "cannot import 'exits_on_import.py': SystemExit: 7"


async def test_slow_import_does_not_stall_the_loop(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, tmp_path: Path
) -> None:
    """Importing user code happens off the event loop thread."""
    (tmp_path / "slow_import.py").write_text(
        "import time\ntime.sleep(0.5)\ndef f(context):\n    return 1\n"
    )
    graph = trt.load_task_file(write_tasks(function("f", "slow_import.py", "f")))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        with trio.fail_after(10):
            await trt.run_task(graph.tasks[0], make_context(quiet_output))
        nursery.cancel_scope.cancel()

    # Blocked, the ticker would have run once; free, about fifty times.
    assert ticks > 10


async def test_attempts_starting_together_share_one_import(
    write_tasks: WriteTasks,
    quiet_output: trt.OutputSink,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "slow_import.py").write_text(
        "import pathlib, time\n"
        "with pathlib.Path(__file__).with_name('imports.log').open('a') as log:\n"
        "    log.write('import\\n')\n"
        "time.sleep(0.2)\n"
        "async def go(context):\n"
        "    pass\n"
    )
    (tmp_path / "broken_import.py").write_text(
        "import pathlib\n"
        "with pathlib.Path(__file__).with_name('broken.log').open('a') as log:\n"
        "    log.write('import\\n')\n"
        "raise ImportError('no luck')\n"
    )
    threads = []
    real = trio.to_thread.run_sync

    async def counted(*args: Any, **kwargs: Any) -> Any:
        threads.append(args[0])
        return await real(*args, **kwargs)

    monkeypatch.setattr(trio.to_thread, "run_sync", counted)
    tasks = [function(f"ok{i}", "slow_import.py", "go") for i in range(20)]
    tasks += [function(f"bad{i}", "broken_import.py", "go") for i in range(5)]
    graph = trt.load_task_file(write_tasks(*tasks))

    result = await trt.Runtime(
        graph, trt.RunOptions(concurrency=25), output=quiet_output
    ).run()

    statuses = {task.id: task.status for task in result.tasks}
    assert [statuses[f"ok{i}"] for i in range(20)] == ["success"] * 20
    assert [statuses[f"bad{i}"] for i in range(5)] == ["failed"] * 5
    # One thread and one import per module, however many attempts waited.
    assert len(threads) == 2
    assert (tmp_path / "imports.log").read_text() == "import\n"
    assert (tmp_path / "broken.log").read_text() == "import\n"
    bad = next(task for task in result.tasks if task.id == "bad4")
    assert bad.error is not None
    assert bad.error.kind == "spawn_error"
    assert "no luck" in bad.error.message


async def test_a_dotted_module_still_importing_is_waited_for(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, tmp_path: Path
) -> None:
    # A dotted module is in sys.modules from the start of its import; an
    # attempt that starts meanwhile, or retries after timing out while
    # waiting, must wait for the import instead of finding it half run.
    name = f"slow_dotted_{os.getpid()}_{id(tmp_path)}"
    (tmp_path / f"{name}.py").write_text(
        "import time\ntime.sleep(0.6)\nasync def job(context):\n    pass\n"
    )
    path = write_tasks(
        function("first", name, "job"),
        {"id": "gate", "type": "command", "command": "sleep", "args": ["0.2"]},
        function("meanwhile", name, "job", dependsOn=["gate"]),
        function(
            "impatient",
            name,
            "job",
            timeoutMs=300,
            retries={"maxAttempts": 3, "backoffMs": 0},
        ),
    )
    graph = trt.load_task_file(path)

    result = await trt.Runtime(
        graph, trt.RunOptions(concurrency=3), output=quiet_output
    ).run()

    tasks = {task.id: task for task in result.tasks}
    assert {task_id: t.status for task_id, t in tasks.items()} == {
        "first": "success",
        "gate": "success",
        "meanwhile": "success",
        "impatient": "success",
    }
    impatient = tasks["impatient"].attempts
    assert impatient[0].status == "timed_out"
    assert impatient[-1].status == "success"


async def test_a_module_file_imports_from_the_task_files_folder(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, tmp_path: Path
) -> None:
    # The task file's folder is on sys.path for every function task, so a
    # module imports its helpers from there, a subfolder's by package name.
    # Each module's own folder is not: two folders' same-named helpers
    # would then be whichever one was imported first.
    jobs = tmp_path / f"jobs_{os.getpid()}_{id(tmp_path)}"
    jobs.mkdir()
    top = f"top_{os.getpid()}_{id(tmp_path)}"
    (tmp_path / f"{top}.py").write_text("ANSWER = 42\n")
    (jobs / "helper.py").write_text("NAME = 'jobs helper'\n")
    (jobs / "main.py").write_text(
        f"import {top}\n"
        f"from {jobs.name} import helper\n"
        "async def check(context):\n"
        f"    assert {top}.ANSWER == 42\n"
        "    assert helper.NAME == 'jobs helper'\n"
    )
    graph = trt.load_task_file(
        write_tasks(function("f", f"{jobs.name}/main.py", "check"))
    )

    result = await trt.Runtime(graph, output=quiet_output).run()

    (task,) = result.tasks
    assert task.status == "success", task.error


async def test_a_huge_error_message_is_cut(
    write_tasks: WriteTasks, quiet_output: trt.OutputSink, tmp_path: Path
) -> None:
    (tmp_path / "loud.py").write_text(
        "async def shout(context):\n    raise ValueError('x' * 5_000_000)\n"
    )
    graph = trt.load_task_file(write_tasks(function("f", "loud.py", "shout")))

    result = await trt.Runtime(graph, output=quiet_output).run()

    error = result.tasks[0].error
    assert error is not None
    assert error.message.startswith("ValueError: xxx")
    assert error.message.endswith(" more characters)")
    assert len(error.message) < 11_000
    assert error.stack is not None
    assert len(error.stack) < 101_000
