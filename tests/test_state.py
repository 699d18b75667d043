"""The state store: atomic snapshots, the journal, the lock, and a run's use.

Store tests work on files directly; run tests use the scripted executor,
with real time where the writer's worker thread must get a turn.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

import trt
from tests.conftest import ScriptedExecutor, WriteTasks, cli_cwd, command, run_cli
from trt._state import JournalRecord, RunningAttempt


def scripted(task_id: str, ms: int = 10, **fields: Any) -> dict[str, Any]:
    metadata = {"ms": ms, **fields.pop("metadata", {})}
    return command(task_id, "unused", metadata=metadata, **fields)


def state_of(
    task_ids: list[str], status: str = "running", seq: int = 0
) -> trt.RunState:
    return trt.RunState(
        run_id="r1",
        task_file="t.json",
        task_file_path="/x/t.json",
        pid=1,
        started_at="2026-01-01T00:00:00.000+00:00",
        updated_at="2026-01-01T00:00:00.000+00:00",
        status=status,
        options=trt.RunOptions(),
        seq=seq,
        journal="r1.journal" if status == "running" else None,
        tasks_by_id={
            task_id: trt.TaskRecord(status="pending", definition_hash="h")
            for task_id in task_ids
        },
    )


def record(seq: int, task_id: str, status: str) -> JournalRecord:
    return JournalRecord(
        seq=seq,
        at=f"2026-01-01T00:00:0{seq}.000+00:00",
        id=task_id,
        task=trt.TaskRecord(status=status, definition_hash="h"),
    )


class TestStore:
    def test_load_applies_the_journal_in_order(self, tmp_path: Path) -> None:
        with trt.StateStore(tmp_path) as store:
            store.save(state_of(["a", "b"]))
            store.append([record(1, "a", "running"), record(2, "b", "running")])
            store.append([record(3, "a", "success")])

            loaded = store.load()

        assert loaded.tasks_by_id["a"].status == "success"
        assert loaded.tasks_by_id["b"].status == "running"
        assert loaded.seq == 3
        assert loaded.updated_at == "2026-01-01T00:00:03.000+00:00"

    def test_a_torn_last_line_is_ignored(self, tmp_path: Path) -> None:
        with trt.StateStore(tmp_path) as store:
            store.save(state_of(["a"]))
            store.append([record(1, "a", "running")])
        whole = msgspec.json.encode(record(2, "a", "success"))
        with open(tmp_path / "r1.journal", "ab") as journal:
            journal.write(whole[: len(whole) // 2])

        loaded = trt.StateStore(tmp_path).load()

        assert loaded.tasks_by_id["a"].status == "running"

    def test_lines_a_snapshot_already_holds_are_skipped(self, tmp_path: Path) -> None:
        """A crash between compaction's rename and the journal's truncation."""
        with trt.StateStore(tmp_path) as store:
            store.save(state_of(["a"]))
            store.append([record(1, "a", "running"), record(2, "a", "success")])
            journal = (tmp_path / "r1.journal").read_bytes()
            newer = state_of(["a"], seq=2)
            newer = msgspec.structs.replace(
                newer,
                tasks_by_id={
                    "a": trt.TaskRecord(status="success", definition_hash="h")
                },
            )
            store.save(newer)
        (tmp_path / "r1.journal").write_bytes(journal)

        loaded = trt.StateStore(tmp_path).load()

        assert loaded.tasks_by_id["a"].status == "success"
        assert loaded.seq == 2

    def test_another_runs_journal_is_never_applied(self, tmp_path: Path) -> None:
        """A journal a crashed run left behind belongs to that run only."""
        with trt.StateStore(tmp_path) as store:
            store.save(state_of(["a"]))
            store.append([record(5, "a", "success")])
        old = tmp_path / f"{'0' * 32}.journal"
        (tmp_path / "r1.journal").rename(old)
        (tmp_path / "notes.journal").write_text("not trt's")

        with trt.StateStore(tmp_path) as store:
            store.save(state_of(["a"]))
            loaded = store.load()

        assert loaded.tasks_by_id["a"].status == "pending"
        assert not old.exists()
        assert (tmp_path / "notes.journal").read_text() == "not trt's"

    def test_a_journal_name_that_is_a_path_is_refused(self, tmp_path: Path) -> None:
        state = msgspec.structs.replace(state_of(["a"]), journal="../secrets.journal")
        (tmp_path / "run.json").write_bytes(msgspec.json.encode(state))

        with pytest.raises(trt.StateError, match="names no journal of trt's"):
            trt.StateStore(tmp_path).load()

    def test_an_older_snapshot_never_replaces_a_newer_one(self, tmp_path: Path) -> None:
        with trt.StateStore(tmp_path) as store:
            assert store.save(state_of(["a"], status="success", seq=5))

            assert not store.save(state_of(["a"], status="running", seq=4))

        assert trt.StateStore(tmp_path).load().status == "success"

    def test_the_snapshot_is_replaced_whole(self, tmp_path: Path) -> None:
        with trt.StateStore(tmp_path) as store:
            store.save(state_of(["a"]))
            store.save(state_of(["a", "b"], seq=1))

        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
        data = json.loads((tmp_path / "run.json").read_text())
        assert set(data["tasksById"]) == {"a", "b"}

    def test_a_second_store_on_the_folder_is_refused(self, tmp_path: Path) -> None:
        with trt.StateStore(tmp_path) as store:
            import os

            assert store.holder() == os.getpid()
            with pytest.raises(
                trt.StateError, match=rf"in use by trt process {os.getpid()}"
            ):
                trt.StateStore(tmp_path).open()

        assert trt.StateStore(tmp_path).holder() is None
        with trt.StateStore(tmp_path):
            pass

    def test_writes_after_close_are_dropped(self, tmp_path: Path) -> None:
        store = trt.StateStore(tmp_path)
        store.open()
        store.save(state_of(["a"]))
        store.close()

        assert not store.append([record(1, "a", "success")])
        assert not store.save(state_of(["a"], status="success", seq=9))
        assert trt.StateStore(tmp_path).load().status == "running"

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (None, r"no saved run: '.*run\.json' does not exist"),
            (b"{not json", r"is not a trt state file"),
            (b'{"version": 1}', r"is not a trt state file: Object missing required"),
        ],
        ids=["missing", "garbage", "incomplete"],
    )
    def test_unreadable_state_is_a_state_error(
        self, tmp_path: Path, content: bytes | None, message: str
    ) -> None:
        if content is not None:
            (tmp_path / "run.json").write_bytes(content)

        with pytest.raises(trt.StateError, match=message):
            trt.StateStore(tmp_path).load()

    def test_a_status_trt_never_writes_is_refused(self, tmp_path: Path) -> None:
        state = state_of(["a"], status="success")
        bogus = msgspec.structs.replace(state.tasks_by_id["a"], status="bogus")
        state = msgspec.structs.replace(state, tasks_by_id={"a": bogus})
        (tmp_path / "run.json").write_bytes(msgspec.json.encode(state))

        with pytest.raises(
            trt.StateError, match="task 'a' has an unknown status 'bogus'"
        ):
            trt.StateStore(tmp_path).load()

        state = msgspec.structs.replace(state_of(["a"]), status="yesterday")
        (tmp_path / "run.json").write_bytes(msgspec.json.encode(state))

        with pytest.raises(trt.StateError, match="unknown run status 'yesterday'"):
            trt.StateStore(tmp_path).load()

        weird = trt.AttemptResult(
            task_id="a",
            attempt=1,
            status="weird",
            started_at="2026-01-01T00:00:00.000+00:00",
            ended_at="2026-01-01T00:00:01.000+00:00",
            elapsed_ms=1000.0,
        )
        state = state_of(["a"])
        failed = msgspec.structs.replace(
            state.tasks_by_id["a"], status="failed", attempts=(weird,)
        )
        state = msgspec.structs.replace(state, tasks_by_id={"a": failed})
        (tmp_path / "run.json").write_bytes(msgspec.json.encode(state))

        with pytest.raises(
            trt.StateError, match="task 'a', attempt 1 has an unknown status 'weird'"
        ):
            trt.StateStore(tmp_path).load()

    def test_opening_removes_snapshots_a_killed_trt_left_half_written(
        self, tmp_path: Path
    ) -> None:
        torn = tmp_path / ".run.json.k2j4x9_q"
        torn.write_bytes(b'{"version": 1, "runId": "r1", "tas')
        kept = [tmp_path / "notes.txt", tmp_path / ".run.json.bak"]
        for path in kept:
            path.write_text("kept")

        with trt.StateStore(tmp_path):
            pass

        assert not torn.exists()
        assert [path.read_text() for path in kept] == ["kept", "kept"]

    def test_another_version_is_refused(self, tmp_path: Path) -> None:
        data = msgspec.json.encode(msgspec.structs.replace(state_of(["a"]), version=99))
        (tmp_path / "run.json").write_bytes(data)

        with pytest.raises(trt.StateError, match="has state version 99"):
            trt.StateStore(tmp_path).load()


class TestDefinitionHash:
    def test_same_work_same_hash_whatever_the_order_or_metadata(
        self, write_tasks: WriteTasks
    ) -> None:
        from trt._state import definition_hash

        first = trt.load_task_file(
            write_tasks(
                command("a", "true"),
                command("b", "true"),
                command(
                    "c",
                    "echo",
                    "x",
                    dependsOn=["a", "b"],
                    env={"X": "1", "Y": "2"},
                    retries={"maxAttempts": 2, "retryOn": ["timed_out", "failed"]},
                ),
                name="one.json",
            )
        )
        second = trt.load_task_file(
            write_tasks(
                command(
                    "c",
                    "echo",
                    "x",
                    dependsOn=["b", "a"],
                    env={"Y": "2", "X": "1"},
                    retries={"maxAttempts": 2, "retryOn": ["failed", "timed_out"]},
                    metadata={"note": "moved"},
                ),
                command("b", "true"),
                command("a", "true"),
                name="two.json",
            )
        )

        assert definition_hash(first["c"]) == definition_hash(second["c"])

    @pytest.mark.parametrize(
        "change",
        [
            {"args": ["y"]},
            {"timeoutMs": 5},
            {"retries": {"maxAttempts": 3}},
            {"env": {"X": "2"}},
            {"dependsOn": []},
        ],
        ids=["args", "timeout", "retries", "env", "deps"],
    )
    def test_a_change_of_the_work_changes_the_hash(
        self, write_tasks: WriteTasks, change: dict[str, Any]
    ) -> None:
        from trt._state import definition_hash

        base: dict[str, Any] = {"env": {"X": "1"}, "dependsOn": ["a"]}
        one = command("c", "echo", "x", **base)
        two = {**one, **change}
        a = command("a", "true")
        first = trt.load_task_file(write_tasks(a, one, name="one.json"))
        second = trt.load_task_file(write_tasks(a, two, name="two.json"))

        assert definition_hash(first["c"]) != definition_hash(second["c"])


async def run_with_store(
    path: Path, store_dir: Path, *, concurrency: int = 1, previous: Any = None
) -> trt.RunResult:
    graph = trt.load_task_file(path)
    with trt.StateStore(store_dir) as store:
        runtime = trt.Runtime(
            graph,
            trt.RunOptions(concurrency=concurrency),
            executor=ScriptedExecutor(),
            store=store,
            previous=previous,
        )
        return await runtime.run()


class TestRunState:
    async def test_a_finished_run_leaves_one_complete_snapshot(
        self, write_tasks: WriteTasks, tmp_path: Path
    ) -> None:
        path = write_tasks(
            scripted("ok"),
            scripted(
                "flaky",
                metadata={"outcomes": ["failed", "success"]},
                retries={"maxAttempts": 2},
            ),
            scripted("bad", metadata={"outcomes": ["failed"]}),
            scripted("after", dependsOn=["bad"]),
        )

        result = await run_with_store(path, tmp_path / "state")

        assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
            "lock",
            "run.json",
        ]
        saved = json.loads((tmp_path / "state" / "run.json").read_text())
        assert saved["runId"] == result.run_id
        assert saved["status"] == "failed"
        assert saved["taskFile"] == str(path)
        assert saved["options"]["concurrency"] == 1
        tasks = saved["tasksById"]
        assert {key: task["status"] for key, task in tasks.items()} == {
            "ok": "success",
            "flaky": "success",
            "bad": "failed",
            "after": "blocked",
        }
        assert [a["status"] for a in tasks["flaky"]["attempts"]] == [
            "failed",
            "success",
        ]
        assert tasks["after"]["blockedBy"] == "bad"
        assert tasks["bad"]["error"]["kind"] == "non_zero_exit"
        assert saved["events"][-1]["taskId"] in tasks

    async def test_every_transition_reaches_disk_while_the_run_runs(
        self, write_tasks: WriteTasks, tmp_path: Path
    ) -> None:
        path = write_tasks(
            scripted("quick", ms=1),
            scripted("slow", ms=60_000),
            scripted("waits", ms=1, dependsOn=["slow"]),
        )
        graph = trt.load_task_file(path)
        store = trt.StateStore(tmp_path / "state")

        async def saved_status(task_id: str, wanted: str) -> trt.RunState:
            # The writer's thread needs real time; poll the file as a user
            # running `trt status` would.
            with trio.fail_after(10):
                while True:
                    await trio.sleep(0.01)
                    try:
                        state = trt.StateStore(tmp_path / "state").load()
                    except trt.StateError:
                        continue  # not even the first snapshot yet
                    if state.tasks_by_id[task_id].status == wanted:
                        return state

        with store:
            runtime = trt.Runtime(
                graph,
                trt.RunOptions(concurrency=2),
                executor=ScriptedExecutor(),
                store=store,
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(runtime.run)
                state = await saved_status("quick", "success")
                state = await saved_status("slow", "running")
                running = state.tasks_by_id["slow"].running
                assert running is not None
                assert running.attempt == 1
                assert state.tasks_by_id["waits"].status == "pending"
                assert state.status == "running"
                runtime.cancel("test over")

        final = trt.StateStore(tmp_path / "state").load()
        assert final.status == "canceled"
        assert final.tasks_by_id["slow"].status == "canceled"
        assert final.tasks_by_id["slow"].running is None

    async def test_a_run_ends_when_its_last_task_does(
        self,
        write_tasks: WriteTasks,
        tmp_path: Path,
        autojump_clock: trio.testing.MockClock,
    ) -> None:
        # The writer's coalescing window must not keep the run open.
        graph = trt.load_task_file(write_tasks(scripted("a", ms=10)))
        with trt.StateStore(tmp_path / "state") as store:
            runtime = trt.Runtime(graph, executor=ScriptedExecutor(), store=store)
            await runtime.run()

        assert trio.current_time() == pytest.approx(0.010)
        assert store.load().tasks_by_id["a"].status == "success"

    async def test_bytes_written_grow_linearly(
        self, write_tasks: WriteTasks, tmp_path: Path
    ) -> None:
        written = {}
        for count in (200, 2000):
            path = write_tasks(
                *[scripted(f"t{i:05d}", ms=0) for i in range(count)],
                name=f"n{count}.json",
            )
            graph = trt.load_task_file(path)
            with trt.StateStore(tmp_path / f"s{count}") as store:
                runtime = trt.Runtime(
                    graph,
                    trt.RunOptions(concurrency=16),
                    executor=ScriptedExecutor(),
                    store=store,
                )
                await runtime.run()
                written[count] = store.bytes_written

        # Linear: the bytes per task stay within a small constant, while
        # rewriting the snapshot per change would cost each task a whole
        # snapshot (hundreds of KB at 2,000 tasks). How many changes share
        # a journal line depends on the machine's speed: a busy machine
        # catches more tasks mid-flight, so per-task bytes vary (670 B to
        # 1.9 KB seen), and the ratio between the two sizes is kept loose.
        per_task = {count: written[count] / count for count in written}
        assert per_task[2000] < 4096
        assert per_task[2000] < 4 * per_task[200]

    async def test_a_failing_disk_stops_saving_but_not_the_run(
        self, write_tasks: WriteTasks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = write_tasks(*[scripted(f"t{i}", ms=5) for i in range(5)])
        graph = trt.load_task_file(path)
        calls = []

        def full(self: trt.StateStore, lines: bytes, *, sync: bool = True) -> bool:
            calls.append(lines)
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(trt.StateStore, "append_lines", full)
        with trt.StateStore(tmp_path / "state") as store:
            runtime = trt.Runtime(graph, executor=ScriptedExecutor(), store=store)
            result = await runtime.run()

        assert result.ok
        assert len(calls) == 1
        assert runtime.state_failure == (
            f"cannot save the run's state in {tmp_path / 'state'}: "
            "No space left on device"
        )
        assert not runtime.state_saved


def test_running_attempt_round_trips() -> None:
    data = msgspec.json.encode(
        trt.TaskRecord(
            status="running",
            definition_hash="h",
            running=RunningAttempt(
                attempt=2, started_at="2026-01-01T00:00:00.000+00:00"
            ),
        )
    )

    assert json.loads(data) == {
        "status": "running",
        "definitionHash": "h",
        "running": {"attempt": 2, "startedAt": "2026-01-01T00:00:00.000+00:00"},
    }


class TestStatusCommand:
    def test_without_state_it_says_so_and_exits_2(self) -> None:
        done = run_cli("status")

        assert done.returncode == 2
        assert done.stdout == ""
        assert done.stderr == (
            "trt: error: no saved run: 'state/run.json' does not exist "
            "(trt keeps a run's state there; see --state-dir)\n"
        )

    def test_unreadable_state_exits_2(self) -> None:
        (cli_cwd() / "state").mkdir()
        (cli_cwd() / "state" / "run.json").write_text("{torn")

        done = run_cli("run", "--status")

        assert done.returncode == 2
        assert "is not a trt state file" in done.stderr
        assert "Traceback" not in done.stderr

    def test_after_a_run_it_shows_the_run_and_its_counts(
        self, write_tasks: WriteTasks
    ) -> None:
        path = write_tasks(
            command("ok", "true"),
            command("bad", "false"),
            command("x", "true", dependsOn=["bad"]),
        )
        ran = run_cli("run", str(path), "--state-dir", "elsewhere")

        text = run_cli("status", "--state-dir", "elsewhere")
        data = run_cli("run", "--status", "--json", "--state-dir", "elsewhere")

        assert text.returncode == data.returncode == 0
        summary = json.loads(data.stdout)
        assert summary["taskFile"] == str(path)
        assert summary["status"] == summary["savedStatus"] == "failed"
        assert not summary["live"]
        assert summary["counts"] == {"success": 1, "failed": 1, "blocked": 1}
        assert summary["taskCount"] == 3
        assert f"run:       {summary['runId']}\n" in text.stdout
        assert "status:    failed\n" in text.stdout
        assert "tasks:     3: 1 success, 1 failed, 1 blocked\n" in text.stdout
        assert text.stdout.endswith(
            f"resume:    trt run {path} --resume --state-dir elsewhere\n"
        )
        assert ran.returncode == 1

    def test_a_run_holding_the_folder_is_shown_live(
        self, write_tasks: WriteTasks
    ) -> None:
        path = write_tasks(command("slow", "sleep", "30"))
        state = cli_cwd() / "state"
        process = subprocess.Popen(
            [sys.executable, "-m", "trt", "run", str(path)],
            cwd=cli_cwd(),
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            summary: dict[str, Any] = {}
            while time.monotonic() < deadline:
                done = run_cli("status", "--json")
                if done.returncode == 0:
                    summary = json.loads(done.stdout)
                    if summary["counts"].get("running"):
                        break
                time.sleep(0.05)
            second = run_cli("run", str(path))
        finally:
            process.terminate()
            process.wait(timeout=20)

        assert summary["live"]
        assert summary["status"] == "running"
        assert summary["pid"] == process.pid
        assert second.returncode == 2
        assert second.stderr == (
            f"trt: error: 'state' is in use by trt process {process.pid}; wait "
            "for it to end or give this run its own --state-dir\n"
        )
        assert (state / "run.json").exists()


class TestBreakRound:
    """Regressions from trying to break durable runs."""

    def test_state_that_cannot_be_saved_at_the_start_is_exit_2(
        self, write_tasks: WriteTasks
    ) -> None:
        path = write_tasks(command("a", "true"))
        (cli_cwd() / "state" / "run.json").mkdir(parents=True)

        done = run_cli("run", str(path))

        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("trt: error: cannot save the run's state in ")
        assert "internal error" not in done.stderr

    @pytest.mark.parametrize("name", ["run.json", "lock", "old.journal"])
    def test_a_task_file_where_state_goes_is_refused(
        self, write_tasks: WriteTasks, name: str
    ) -> None:
        path = write_tasks(command("a", "true"), name=name)

        done = run_cli("run", str(path), "--state-dir", str(path.parent))

        assert done.returncode == 2
        assert "name trt writes its state to" in done.stderr
        assert json.loads(path.read_text())["tasks"][0]["id"] == "a"

    def test_an_empty_state_dir_is_refused(self, write_tasks: WriteTasks) -> None:
        done = run_cli("run", str(write_tasks(command("a", "true"))), "--state-dir", "")

        assert done.returncode == 2
        assert done.stderr == "trt: error: --state-dir: expected a folder, got ''\n"

    async def test_bytes_grow_linearly_with_a_tasks_attempts(
        self,
        write_tasks: WriteTasks,
        tmp_path: Path,
        autojump_clock: trio.testing.MockClock,
    ) -> None:
        written = {}
        for attempts in (40, 400):
            path = write_tasks(
                scripted(
                    "flaky",
                    ms=1,
                    retries={"maxAttempts": attempts},
                    metadata={"outcomes": ["failed"]},
                ),
                name=f"a{attempts}.json",
            )
            with trt.StateStore(tmp_path / f"s{attempts}") as store:
                runtime = trt.Runtime(
                    trt.load_task_file(path), executor=ScriptedExecutor(), store=store
                )
                result = await runtime.run()
                written[attempts] = store.bytes_written
            assert len(result.tasks[0].attempts) == attempts
            saved = trt.StateStore(tmp_path / f"s{attempts}").load()
            assert len(saved.tasks_by_id["flaky"].attempts) == attempts

        # Ten times the attempts: about ten times the bytes (the batches,
        # cut by timing, vary), not the hundred a full history per line
        # would cost.
        ratio = written[400] / written[40]
        assert ratio < 30, (ratio, written)

    async def test_the_journal_carries_only_new_attempts(
        self, write_tasks: WriteTasks, tmp_path: Path
    ) -> None:
        path = write_tasks(
            scripted(
                "flaky",
                ms=50,
                retries={"maxAttempts": 3},
                metadata={"outcomes": ["failed", "failed", "success"]},
            )
        )
        graph = trt.load_task_file(path)
        with trt.StateStore(tmp_path / "state") as store:
            runtime = trt.Runtime(graph, executor=ScriptedExecutor(), store=store)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(runtime.run)
                with trio.fail_after(10):
                    while True:
                        await trio.sleep(0.01)
                        try:
                            state = trt.StateStore(tmp_path / "state").load()
                        except trt.StateError:
                            continue
                        if len(state.tasks_by_id["flaky"].attempts) == 2:
                            break
                journal = next((tmp_path / "state").glob("*.journal")).read_text()

        lines = [json.loads(line) for line in journal.splitlines()]
        deltas = [line["task"] for line in lines if "attemptsFrom" in line["task"]]
        assert deltas
        assert all(len(delta.get("attempts", [])) <= 1 for delta in deltas)

    def test_a_finished_run_ignores_a_shutdown(self, write_tasks: WriteTasks) -> None:
        graph = trt.load_task_file(write_tasks(scripted("a")))
        runtime = trt.Runtime(graph, executor=ScriptedExecutor())

        trio.run(runtime.run)
        runtime.shutdown("SIGINT", "cancel")

        assert runtime.finished
        assert runtime.shutdown_info is None

    def test_the_recorder_takes_signals_without_raising(self) -> None:
        import os
        import signal

        from trt._cli._signals import SignalRecorder

        before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            recorder = SignalRecorder().install()
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
        finally:
            for signum, handler in before.items():
                signal.signal(signum, handler)

        assert recorder.signals == [signal.SIGINT, signal.SIGTERM]


async def test_hand_framed_records_decode_to_the_built_ones(
    write_tasks: WriteTasks, tmp_path: Path
) -> None:
    path = write_tasks(
        scripted("ready"), scripted("waits", dependsOn=["ready"]), name="q.json"
    )
    graph = trt.load_task_file(path)
    runtime = trt.Runtime(graph, executor=ScriptedExecutor(), previous=None)
    runtime._hashes = {task.id: f"h-{task.id}" for task in graph}
    runtime._states["ready"].status = "queued"
    runtime._states["ready"].queued_at = "2026-01-01T00:00:00.000+00:00"

    for task_id in ("ready", "waits"):
        quick = runtime._quick_record(task_id)
        assert quick is not None
        decoded = msgspec.json.decode(quick, type=trt.TaskRecord)
        assert decoded == runtime._task_record(task_id)


def test_nothing_is_appended_after_a_snapshot_without_journal(tmp_path: Path) -> None:
    """A forced exit's snapshot is the last word, even for a late batch."""
    with trt.StateStore(tmp_path) as store:
        store.save(state_of(["a"]))
        store.save(state_of(["a"], status="interrupted", seq=5))

        assert not store.append([record(6, "a", "success")])

    assert trt.StateStore(tmp_path).load().status == "interrupted"


async def test_compaction_during_a_run_loses_nothing(
    write_tasks: WriteTasks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small threshold, so a short run compacts several times.
    monkeypatch.setattr("trt._state_writer.MIN_COMPACT_BYTES", 2048)
    snapshots = []
    real = trt.StateStore.write_snapshot

    def counted(self: trt.StateStore, *args: Any, **kwargs: Any) -> Any:
        snapshots.append(self.load().status if self.exists() else None)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(trt.StateStore, "write_snapshot", counted)
    path = write_tasks(*[scripted(f"t{i:03d}", ms=1) for i in range(300)])
    graph = trt.load_task_file(path)
    with trt.StateStore(tmp_path / "state") as store:
        runtime = trt.Runtime(
            graph,
            trt.RunOptions(concurrency=4),
            executor=ScriptedExecutor(),
            store=store,
        )
        await runtime.run()

    # The first snapshot, at least one compaction mid-run, the final one.
    assert len(snapshots) >= 3
    assert snapshots[0] is None
    assert snapshots.count("running") >= 2
    final = trt.StateStore(tmp_path / "state").load()
    assert final.status == "success"
    assert {record.status for record in final.tasks_by_id.values()} == {"success"}
    assert all(len(record.attempts) == 1 for record in final.tasks_by_id.values())
