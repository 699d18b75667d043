"""End-to-end tests of the ``trt`` command line, in child interpreters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import trt
from tests.conftest import TASKS, WriteTasks, cli_cwd, command, function, run_cli


class TestHelp:
    @pytest.mark.parametrize(
        "args",
        [[], ["--help"], ["-h"], ["help"]],
        ids=["bare", "long", "short", "word"],
    )
    def test_overview_exits_zero(self, args: list[str]) -> None:
        done = run_cli(*args)

        assert done.returncode == 0
        assert done.stdout.startswith("trt - run a file of tasks")
        assert "trt run FILE [flags]" in done.stdout
        assert "--concurrency N" in done.stdout
        assert done.stderr == ""

    def test_run_help_comes_before_reading_the_file(self, tmp_path: Path) -> None:
        done = run_cli("run", str(tmp_path / "missing.json"), "--help")

        assert done.returncode == 0
        assert "usage: trt run" in done.stdout
        assert "--concurrency N" in done.stdout

    def test_help_imports_neither_trio_nor_msgspec(self) -> None:
        code = (
            "import sys\n"
            "from trt._cli._main import main\n"
            "main(['--help'])\n"
            "print(sorted(m for m in ('trio', 'msgspec') if m in sys.modules),"
            " file=sys.stderr)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )

        assert done.stderr.strip() == "[]"

    def test_validate_does_not_import_trio(self) -> None:
        code = (
            "import sys\n"
            "from trt._cli._main import main\n"
            f"main(['validate', {str(TASKS / 'dag.json')!r}])\n"
            "print('trio' in sys.modules, file=sys.stderr)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )

        assert done.stderr.strip() == "False"


def test_version_is_printed() -> None:
    done = run_cli("--version")

    assert done.returncode == 0
    assert done.stdout == f"trt {trt.__version__}\n"


class TestBadUsage:
    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (
                ["--concurrency", "0"],
                "--concurrency: expected a positive integer, got '0'",
            ),
            (
                ["--concurrency", "-1"],
                "--concurrency: expected a positive integer, got '-1'",
            ),
            (
                ["--concurrency", "1.5"],
                "--concurrency: expected a positive integer, got '1.5'",
            ),
            (
                ["--concurrency", "abc"],
                "--concurrency: expected a positive integer, got 'abc'",
            ),
            (
                ["--concurrency=-3"],
                "--concurrency: expected a positive integer, got '-3'",
            ),
            (["--concurrency"], "--concurrency: missing value"),
            (["--timeout", "-5"], "--timeout: expected a positive integer, got '-5'"),
            (["--frobnicate"], "unknown flag '--frobnicate' for trt run"),
            (["--frob=1"], "unknown flag '--frob' for trt run"),
            (["extra.json"], "unexpected argument 'extra.json' for trt run"),
            (["--reports-dir", "--timeout", "5"], "--reports-dir: missing value"),
            (
                ["--log-events", "events.jsonl"],
                "--log-events takes its value as --log-events=VALUE; "
                "got a separate 'events.jsonl'",
            ),
            (
                ["--kill-grace", "0" * 30 + "1" * 16],
                "--kill-grace: at most 31536000000 allowed, "
                "got '00000000000000000000...'",
            ),
        ],
        ids=[
            "zero",
            "negative",
            "fraction",
            "word",
            "equals-negative",
            "missing",
            "negative-timeout",
            "unknown",
            "unknown-with-value",
            "second-file",
            "flag-as-value",
            "optional-value-with-space",
            "huge-with-leading-zeros",
        ],
    )
    def test_refused_with_one_line_and_exit_2(
        self, args: list[str], message: str
    ) -> None:
        done = run_cli("run", str(TASKS / "dag.json"), *args)

        assert done.returncode == 2
        assert done.stderr == f"trt: error: {message}\n"
        assert done.stdout == ""

    def test_reports_dir_that_is_a_file_is_refused(self, tmp_path: Path) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("")

        done = run_cli("run", str(TASKS / "dag.json"), "--reports-dir", str(blocker))

        assert done.returncode == 2
        assert done.stderr == (
            f"trt: error: --reports-dir: {str(blocker)!r} exists and is not a folder\n"
        )

    def test_missing_file_argument(self) -> None:
        done = run_cli("run")

        assert done.returncode == 2
        assert done.stderr == (
            "trt: error: trt run: missing FILE (the task file to read)\n"
        )

    def test_mistyped_command_gets_a_suggestion(self) -> None:
        done = run_cli("valdiate", str(TASKS / "dag.json"))

        assert done.returncode == 2
        assert done.stderr == (
            "trt: error: unknown command 'valdiate'; did you mean 'trt validate'?\n"
        )

    def test_missing_file_with_flags_is_not_called_a_command(self) -> None:
        done = run_cli("nosuchfile", "--concurrency", "2")

        assert done.returncode == 2
        assert "nosuchfile: cannot read the file: No such file or directory" in (
            done.stderr
        )

    def test_unknown_top_level_flag(self) -> None:
        done = run_cli("--frobnicate")

        assert done.returncode == 2
        assert (
            done.stderr == "trt: error: unknown flag '--frobnicate' (try: trt --help)\n"
        )

    def test_flags_may_come_before_the_file(self, tmp_path: Path) -> None:
        done = run_cli(
            "run",
            "--concurrency",
            "2",
            "--reports-dir",
            str(tmp_path),
            str(TASKS / "dag.json"),
        )

        assert done.returncode == 0, done.stderr
        assert (tmp_path / "latest.json").exists()


class TestValidate:
    def test_prints_count_and_ids(self) -> None:
        done = run_cli("validate", str(TASKS / "dag.json"))

        assert done.returncode == 0
        lines = done.stdout.splitlines()
        assert lines[0] == f"{TASKS / 'dag.json'}: valid, 5 tasks"
        assert lines[1:] == ["fetch", "build-lib", "build-docs", "test", "package"]

    def test_invalid_file_lists_every_problem_without_traceback(self) -> None:
        path = TASKS / "invalid" / "many-problems.json"

        done = run_cli("validate", str(path))

        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        lines = done.stderr.splitlines()
        assert lines[0] == f"trt: error: {path}: 5 problems"
        assert f"{path}: $.tasks[1].timeoutMs (task 'bad one'): " in lines[2]
        assert lines[2].endswith("got -5")
        assert len(lines) == 6

    def test_run_refuses_an_invalid_file_before_running(
        self, write_tasks: WriteTasks, tmp_path: Path
    ) -> None:
        marker = tmp_path / "ran"
        path = write_tasks(
            command("first", "touch", str(marker)),
            command("second", "true", dependsOn=["ghost"]),
        )

        done = run_cli("run", str(path), "--reports-dir", str(tmp_path / "r"))

        assert done.returncode == 2
        assert "depends on unknown task 'ghost'" in done.stderr
        assert not marker.exists()
        assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "args",
    [["--help"], ["schema"], ["validate", str(TASKS / "dag.json")]],
    ids=["help", "schema", "validate"],
)
def test_unwritable_stdout_is_one_clear_error(args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "trt", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cli_cwd(),
            check=False,
        )

    assert done.returncode == 1
    assert (
        done.stderr == "trt: error: cannot write to stdout: No space left on device\n"
    )


def test_lost_task_output_fails_the_run(
    write_tasks: WriteTasks, tmp_path: Path
) -> None:
    path = write_tasks(command("say", "echo", "important"))

    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "trt",
                "run",
                str(path),
                "--reports-dir",
                str(tmp_path),
            ],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cli_cwd(),
            check=False,
        )

    assert done.returncode == 1
    assert done.stderr.endswith(
        "trt: error: cannot write task output to stdout: No space left on device\n"
    )


def test_schema_prints_the_generated_json_schema() -> None:
    done = run_cli("schema")

    assert done.returncode == 0
    assert json.loads(done.stdout) == trt.json_schema()


class TestRun:
    def test_mixed_results_fail_with_report(self, tmp_path: Path) -> None:
        done = run_cli(
            "run",
            str(TASKS / "mixed-results.json"),
            "--concurrency",
            "3",
            "--reports-dir",
            str(tmp_path),
        )

        assert done.returncode == 1
        report = json.loads((tmp_path / "latest.json").read_text())
        tasks = {task["id"]: task for task in report["tasks"]}
        kinds = {
            task_id: task["error"]["kind"] if task["error"] else None
            for task_id, task in tasks.items()
        }
        assert kinds == {
            "ok-command": None,
            "ok-sync-function": None,
            "ok-async-function": None,
            "exit-three": "non_zero_exit",
            "missing-program": "spawn_error",
            "sync-raises": "thrown",
            "async-raises": "rejected",
            "after-exit-three": "blocked",
            "after-after": "blocked",
            "after-successes": None,
        }
        assert tasks["exit-three"]["attempts"][0]["process"]["exitCode"] == 3
        assert tasks["exit-three"]["attempts"][0]["process"]["stderrBytes"] == 19
        assert tasks["after-after"]["blockedBy"] == "after-exit-three"
        assert tasks["after-after"]["blockedRoot"] == "exit-three"
        assert report["status"] == "failed"
        assert report["options"]["concurrency"] == 3
        assert report["metrics"] == report["metrics"] | {
            "taskCount": 10,
            "completedCount": 4,
            "failedCount": 4,
            "blockedCount": 2,
            "retryCount": 0,
        }
        assert 1 <= report["metrics"]["maxActive"] <= 3
        assert "[ok-command] hello from a command" in done.stdout
        assert "[exit-three] failing on purpose" in done.stderr
        assert "trt: failed: 10 tasks, 4 succeeded, 4 failed, 2 blocked" in done.stderr

    def test_delays_succeed_with_full_report(self, tmp_path: Path) -> None:
        done = run_cli(
            "run",
            str(TASKS / "one-hundred-delays.json"),
            "--concurrency",
            "20",
            "--reports-dir",
            str(tmp_path),
        )

        assert done.returncode == 0, done.stderr
        report = json.loads((tmp_path / "latest.json").read_text())
        assert set(report) == {
            "runId",
            "taskFile",
            "status",
            "mode",
            "options",
            "startedAt",
            "endedAt",
            "tasks",
            "metrics",
            "stopReason",
            "canceledAt",
            "cancelReason",
            "canceledTaskIds",
            "error",
            "shutdown",
            "resumedFrom",
            "carriedOverTaskIds",
        }
        assert report["status"] == "success"
        assert report["metrics"]["maxActive"] == 20
        assert report["metrics"]["completedCount"] == 100
        first = report["tasks"][0]
        assert set(first) >= {"queuedAt", "startedAt", "endedAt", "queueMs", "attempts"}
        process = first["attempts"][0]["process"]
        assert process["exitCode"] == 0
        assert process["pid"] > 0
        assert first["attempts"][0]["elapsedMs"] >= 100

    def test_run_flags_may_precede_a_bare_file(self, tmp_path: Path) -> None:
        done = run_cli(
            "--concurrency",
            "2",
            str(TASKS / "dag.json"),
            "--reports-dir",
            str(tmp_path),
        )

        assert done.returncode == 0, done.stderr
        report = json.loads((tmp_path / "latest.json").read_text())
        assert report["options"]["concurrency"] == 2
        assert report["metrics"]["maxActive"] == 2

    def test_report_is_readable_by_others(self, tmp_path: Path) -> None:
        run_cli(str(TASKS / "dag.json"), "--reports-dir", str(tmp_path))

        assert (tmp_path / "latest.json").stat().st_mode & 0o044 == 0o044

    def test_bare_file_means_run(self, tmp_path: Path) -> None:
        done = run_cli(str(TASKS / "dag.json"), "--reports-dir", str(tmp_path))

        assert done.returncode == 0, done.stderr
        report = json.loads((tmp_path / "latest.json").read_text())
        ends = {task["id"]: task["endedAt"] for task in report["tasks"]}
        starts = {task["id"]: task["startedAt"] for task in report["tasks"]}
        assert starts["package"] >= max(ends["test"], ends["build-docs"])
        assert starts["build-lib"] >= ends["fetch"]

    def test_single_concurrency_output_is_untagged(
        self, write_tasks: WriteTasks, tmp_path: Path
    ) -> None:
        path = write_tasks(command("say", "echo", "plain"))

        done = run_cli("run", str(path), "--reports-dir", str(tmp_path))

        assert done.stdout == "plain\n"


def test_report_keeps_text_that_is_not_unicode(
    write_tasks: WriteTasks, tmp_path: Path
) -> None:
    (tmp_path / "jobs.py").write_text(
        "def f(context):\n    raise ValueError('\\ud800 lone surrogate')\n"
    )
    path = write_tasks(
        {"id": "f", "type": "function", "module": "jobs.py", "export": "f"}
    )

    done = run_cli("run", str(path), "--reports-dir", str(tmp_path / "r"))

    assert done.returncode == 1, done.stderr
    report = json.loads((tmp_path / "r" / "latest.json").read_text())
    assert report["tasks"][0]["error"]["message"] == (
        "ValueError: \\ud800 lone surrogate"
    )


def test_closed_standard_streams_never_land_in_trt_files(
    write_tasks: WriteTasks, tmp_path: Path
) -> None:
    # With fds 0-2 closed, the state lock would take fd 1 or 2, and task
    # output and the summary would be written into it.
    (tmp_path / "prints.py").write_text(
        "import sys\n"
        "async def on_loop(context):\n"
        "    print('to-out'); sys.stderr.write('to-err')\n"
        "def in_worker(context):\n"
        "    print('to-out'); sys.stderr.write('to-err')\n"
    )
    path = write_tasks(
        command("talk", "sh", "-c", "echo to-out; echo to-err >&2"),
        # Task code that prints finds streams (to /dev/null), in trt's own
        # process and in the worker process of a plain function.
        function("loop", "prints.py", "on_loop"),
        function("worker", "prints.py", "in_worker"),
    )
    script = (
        'exec "$0" -m trt run "$1" --state-dir "$2" --reports-dir "$3" <&- >&- 2>&-'
    )

    done = subprocess.run(
        ["sh", "-c", script, sys.executable, str(path), "s", "r"],
        cwd=tmp_path,
        check=False,
        timeout=60,
    )

    assert done.returncode == 0
    for name in ("s/lock", "s/run.json", "r/latest.json"):
        data = (tmp_path / name).read_bytes()
        assert b"to-out" not in data, name
        assert b"to-err" not in data, name
        assert b"trt: success" not in data, name
    report = json.loads((tmp_path / "r" / "latest.json").read_text())
    assert report["status"] == "success", report["tasks"]


def test_a_report_may_not_overwrite_the_task_file(tmp_path: Path) -> None:
    folder = tmp_path / "here"
    folder.mkdir()
    path = folder / "latest.json"
    text = json.dumps({"version": 1, "tasks": [command("a", "true")]})
    path.write_text(text)

    link = tmp_path / "link.json"
    link.symlink_to(path)

    done = run_cli("run", str(path), "--reports-dir", str(folder))
    # Through a link too: the report would replace the file it points to.
    by_link = run_cli("run", str(link), "--reports-dir", str(folder))

    assert done.returncode == by_link.returncode == 2
    assert done.stderr.startswith(f"trt: error: --reports-dir: {str(folder)!r} holds")
    assert by_link.stderr.startswith("trt: error: --reports-dir: ")
    assert path.read_text() == text


def test_the_summary_starts_its_own_line(
    write_tasks: WriteTasks, tmp_path: Path
) -> None:
    path = write_tasks(command("partial", "sh", "-c", "printf no-newline >&2"))

    done = run_cli("run", str(path), "--reports-dir", str(tmp_path / "r"))

    assert done.returncode == 0
    assert "no-newline\ntrt: success: 1 task" in done.stderr


def test_a_tasks_unflushed_file_is_flushed_at_exit(
    write_tasks: WriteTasks, tmp_path: Path
) -> None:
    # trt skips the interpreter's teardown only when no task code was
    # imported into it: this task leaves a buffered file for that teardown.
    (tmp_path / "leaky.py").write_text(
        "import pathlib\n"
        "kept = []\n"
        "async def write(context):\n"
        "    handle = open(pathlib.Path(__file__).with_name('out.txt'), 'w')\n"
        "    handle.write('written')\n"
        "    kept.append(handle)\n"
    )
    path = write_tasks(
        {"id": "leak", "type": "function", "module": "leaky.py", "export": "write"}
    )

    done = run_cli("run", str(path), "--reports-dir", str(tmp_path / "r"))

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.txt").read_text() == "written"


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_ctrl_c_during_start_up_waits_for_a_safe_point(
    command: str, tmp_path: Path
) -> None:
    # SIGINT arrives before msgspec is imported (its C module must not be
    # interrupted while it initializes): held, then honoured with 130.
    code = (
        "import os, signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from trt._cli import _commands, _main\n"
        "real = _commands.dispatch\n"
        "def dispatch(*args):\n"
        "    assert 'msgspec' not in sys.modules\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    sys.stderr.write('held\\n')\n"
        "    return real(*args)\n"
        "_commands.dispatch = dispatch\n"
        f"sys.exit(_main.main([{command!r}, {str(TASKS / 'dag.json')!r}]))\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        timeout=60,
    )

    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    if command == "run":
        assert done.stderr == "held\ntrt: stopped by SIGINT before any task started\n"
        assert not (tmp_path / "reports" / "latest.json").exists()
    else:
        assert done.stderr == "held\ntrt: interrupted\n"
