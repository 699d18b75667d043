"""--resume: what a resumed run keeps, what it runs again, what it refuses."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

import trt
from tests.conftest import ScriptedExecutor, WriteTasks, cli_cwd, command, run_cli
from trt._resume import check_same_run, plan_resume
from trt._state import RunningAttempt, definition_hash

STARTED = "2026-01-01T00:00:00.000+00:00"
SAVED = "2026-01-01T00:00:02.500+00:00"


def scripted(task_id: str, ms: int = 10, **fields: Any) -> dict[str, Any]:
    metadata = {"ms": ms, **fields.pop("metadata", {})}
    return command(task_id, "unused", metadata=metadata, **fields)


def attempt(task_id: str, number: int, status: str) -> trt.AttemptResult:
    return trt.AttemptResult(
        task_id=task_id,
        attempt=number,
        status=status,
        started_at=STARTED,
        ended_at=STARTED,
        elapsed_ms=0.0,
    )


def saved_run(graph: trt.TaskGraph, **records: trt.TaskRecord) -> trt.RunState:
    """A saved run of ``graph``; tasks not named are pending."""
    hashes = {task.id: definition_hash(task) for task in graph}
    tasks = {
        task_id: records.get(
            task_id, trt.TaskRecord(status="pending", definition_hash=hashes[task_id])
        )
        for task_id in graph.ids
    }
    return trt.RunState(
        run_id="before",
        task_file=graph.source,
        task_file_path=os.path.realpath(graph.source),
        pid=1,
        started_at=STARTED,
        updated_at=SAVED,
        status="running",
        options=trt.RunOptions(),
        tasks_by_id=tasks,
    )


def done(graph: trt.TaskGraph, task_id: str, status: str = "success") -> trt.TaskRecord:
    return trt.TaskRecord(
        status=status,
        definition_hash=definition_hash(graph[task_id]),
        attempts=(attempt(task_id, 1, status),),
    )


class TestPlan:
    def test_unchanged_successes_are_kept_and_the_rest_runs(
        self, write_tasks: WriteTasks
    ) -> None:
        graph = trt.load_task_file(
            write_tasks(
                command("ok", "true"),
                command("bad", "false"),
                command("late", "true"),
                command("blocked", "true", dependsOn=["bad"]),
                command("cut", "sleep", "9"),
            )
        )
        previous = saved_run(
            graph,
            ok=done(graph, "ok"),
            bad=done(graph, "bad", "failed"),
            blocked=msgspec.structs.replace(
                done(graph, "blocked", "blocked"), attempts=()
            ),
            cut=trt.TaskRecord(
                status="running",
                definition_hash=definition_hash(graph["cut"]),
                running=RunningAttempt(attempt=1, started_at=STARTED),
            ),
        )
        hashes = {task.id: definition_hash(task) for task in graph}

        plan = plan_resume(graph, previous, hashes)

        assert set(plan.carried) == {"ok"}
        assert plan.reasons == {
            "bad": "it ended failed",
            "late": "it ended pending",
            "blocked": "it ended blocked",
            "cut": "it was interrupted",
        }
        (interrupted,) = plan.history["cut"]
        assert interrupted.status == "interrupted"
        assert interrupted.error is not None
        assert interrupted.error.kind == "interrupted"
        assert interrupted.attempt == 1
        assert interrupted.ended_at == SAVED
        assert interrupted.elapsed_ms == 2500.0
        assert [a.status for a in plan.history["bad"]] == ["failed"]

    def test_a_changed_task_reruns_with_everything_downstream(
        self, write_tasks: WriteTasks
    ) -> None:
        graph = trt.load_task_file(
            write_tasks(
                # Dependents first: the plan must not rely on file order.
                command("grandchild", "true", dependsOn=["child"]),
                command("child", "true", dependsOn=["root"]),
                command("root", "true"),
                command("aside", "true"),
            )
        )
        previous = saved_run(graph, **{task.id: done(graph, task.id) for task in graph})
        hashes = {task.id: definition_hash(task) for task in graph}
        hashes["root"] = "changed"

        plan = plan_resume(graph, previous, hashes)

        assert set(plan.carried) == {"aside"}
        assert plan.reasons == {
            "root": "its definition changed",
            "child": "dependency 'root' runs again",
            "grandchild": "dependency 'child' runs again",
        }

    def test_another_file_is_refused(
        self, write_tasks: WriteTasks, tmp_path: Path
    ) -> None:
        graph = trt.load_task_file(write_tasks(command("a", "true")))
        other = msgspec.structs.replace(
            saved_run(graph), task_file="old.json", task_file_path="/elsewhere/old.json"
        )

        with pytest.raises(
            trt.StateError, match=r"cannot resume: the saved run is of 'old.json', not"
        ):
            check_same_run(graph, other)

    def test_changed_ids_are_refused_by_name(self, write_tasks: WriteTasks) -> None:
        before = trt.load_task_file(
            write_tasks(command("a", "true"), command("gone", "true"))
        )
        previous = saved_run(before)
        after = trt.load_task_file(
            write_tasks(command("a", "true"), command("new", "true"))
        )

        with pytest.raises(trt.StateError) as caught:
            check_same_run(after, previous)

        assert "task ids in" in str(caught.value)
        assert "new: 'new'; gone: 'gone'" in str(caught.value)


class TestResumedRun:
    async def test_carried_tasks_do_not_run_and_the_rest_do(
        self, write_tasks: WriteTasks, tmp_path: Path
    ) -> None:
        graph = trt.load_task_file(
            write_tasks(
                scripted("kept"),
                scripted("again", metadata={"outcomes": ["failed", "success"]}),
                scripted("cut", retries={"maxAttempts": 2}),
                scripted("after", dependsOn=["kept", "cut"]),
            )
        )
        previous = saved_run(
            graph,
            kept=done(graph, "kept"),
            again=done(graph, "again", "failed"),
            cut=trt.TaskRecord(
                status="running",
                definition_hash=definition_hash(graph["cut"]),
                attempts=(attempt("cut", 1, "failed"),),
                running=RunningAttempt(attempt=2, started_at=STARTED),
            ),
        )
        executor = ScriptedExecutor()

        with trt.StateStore(tmp_path / "state") as store:
            runtime = trt.Runtime(
                graph, executor=executor, store=store, previous=previous
            )
            result = await runtime.run()

        assert result.ok
        assert sorted(task_id for task_id, _ in executor.started) == [
            "after",
            "again",
            "cut",
        ]
        tasks = {task.id: task for task in result.tasks}
        assert tasks["kept"].carried_over
        assert [a.attempt for a in tasks["kept"].attempts] == [1]
        # History first, then this run's attempts, numbered on from it.
        assert [(a.attempt, a.status) for a in tasks["again"].attempts] == [
            (1, "failed"),
            (2, "success"),
        ]
        assert [(a.attempt, a.status) for a in tasks["cut"].attempts] == [
            (1, "failed"),
            (2, "interrupted"),
            (3, "success"),
        ]
        assert result.resumed_from == "before"
        assert result.carried_over_task_ids == ("kept",)
        saved = trt.StateStore(tmp_path / "state").load()
        assert saved.resumed_from == "before"
        assert saved.tasks_by_id["kept"].carried_over
        assert saved.status == "success"

    async def test_a_resumed_task_gets_a_fresh_retry_budget(
        self, write_tasks: WriteTasks
    ) -> None:
        graph = trt.load_task_file(
            write_tasks(
                scripted(
                    "flaky",
                    retries={"maxAttempts": 2},
                    metadata={"outcomes": ["failed", "failed", "failed", "success"]},
                )
            )
        )
        before = msgspec.structs.replace(
            done(graph, "flaky", "failed"),
            attempts=(attempt("flaky", 1, "failed"), attempt("flaky", 2, "failed")),
        )
        previous = saved_run(graph, flaky=before)

        result = await trt.Runtime(
            graph, executor=ScriptedExecutor(), previous=previous
        ).run()

        (task,) = result.tasks
        assert task.status == "success"
        assert [a.status for a in task.attempts] == [
            "failed",
            "failed",
            "failed",
            "success",
        ]

    async def test_mode_race_settles_on_a_carried_success(
        self, write_tasks: WriteTasks
    ) -> None:
        graph = trt.load_task_file(
            write_tasks(scripted("won"), scripted("other", ms=1000))
        )
        previous = saved_run(graph, won=done(graph, "won"))
        executor = ScriptedExecutor()

        result = await trt.Runtime(
            graph,
            trt.RunOptions(mode="race"),
            executor=executor,
            previous=previous,
        ).run()

        assert result.ok
        assert executor.started == []
        assert {task.id: task.status for task in result.tasks} == {
            "won": "success",
            "other": "canceled",
        }


class TestResumeCommand:
    def ledger_tasks(self, ledger: Path, fail_marker: Path) -> list[dict[str, Any]]:
        note = f'echo "$TRT_TASK_ID" >> {ledger}'
        return [
            command("first", "sh", "-c", note),
            command(
                "fragile",
                "sh",
                "-c",
                f"{note}; test -e {fail_marker}",
                dependsOn=["first"],
            ),
            command("last", "sh", "-c", note, dependsOn=["fragile"]),
            command("aside", "sh", "-c", note),
        ]

    def test_resume_reruns_only_what_did_not_succeed(
        self, write_tasks: WriteTasks, tmp_path: Path
    ) -> None:
        ledger = tmp_path / "ledger"
        marker = tmp_path / "fixed"
        path = write_tasks(*self.ledger_tasks(ledger, marker))

        first = run_cli("run", str(path), "--concurrency", "2")
        marker.touch()
        second = run_cli("run", str(path), "--resume")

        assert first.returncode == 1
        assert second.returncode == 0, second.stderr
        # "first" and "aside" ran once: their successes were carried over.
        assert sorted(ledger.read_text().split()) == [
            "aside",
            "first",
            "fragile",
            "fragile",
            "last",
        ]
        assert "2 carried over, 2 ran" in second.stderr
        report = json.loads((cli_cwd() / "reports" / "latest.json").read_text())
        carried = {task["id"]: task["carriedOver"] for task in report["tasks"]}
        assert carried == {
            "first": True,
            "fragile": False,
            "last": False,
            "aside": True,
        }
        assert report["carriedOverTaskIds"] == ["first", "aside"]
        assert report["resumedFrom"] is not None

    def test_resume_keeps_the_saved_options_unless_given_again(
        self, write_tasks: WriteTasks, tmp_path: Path
    ) -> None:
        path = write_tasks(command("bad", "false"))

        run_cli("run", str(path), "--concurrency", "3", "--mode", "all")
        kept = run_cli("run", str(path), "--resume")
        changed = run_cli("run", str(path), "--resume", "--concurrency", "2")

        assert kept.returncode == changed.returncode == 1
        status = json.loads(run_cli("status", "--json").stdout)
        assert status["status"] == "failed"
        report = json.loads((cli_cwd() / "reports" / "latest.json").read_text())
        assert report["options"]["concurrency"] == 2
        assert report["options"]["mode"] == "all"

    def test_resume_without_state_is_a_clear_error(
        self, write_tasks: WriteTasks
    ) -> None:
        path = write_tasks(command("a", "true"))

        done = run_cli(
            "run", str(path), "--resume",
            "--state-dir", "nowhere", "--reports-dir", "no-reports",
        )  # fmt: skip

        assert done.returncode == 2
        assert done.stderr == (
            "trt: error: --resume: no saved run: 'nowhere/run.json' does not exist\n"
        )
        # Nothing to resume leaves nothing behind.
        assert not (cli_cwd() / "nowhere").exists()
        assert not (cli_cwd() / "no-reports").exists()

    def test_resume_of_another_file_is_refused(self, write_tasks: WriteTasks) -> None:
        one = write_tasks(command("a", "true"), name="one.json")
        two = write_tasks(command("a", "true"), name="two.json")
        run_cli("run", str(one))

        done = run_cli("run", str(two), "--resume")

        assert done.returncode == 2
        assert f"the saved run is of {str(one)!r}, not {str(two)!r}" in done.stderr

    def test_resume_after_ids_changed_is_refused(self, write_tasks: WriteTasks) -> None:
        path = write_tasks(command("a", "true"), command("b", "true"))
        run_cli("run", str(path))
        write_tasks(command("a", "true"), command("c", "true"))

        done = run_cli("run", str(path), "--resume")

        assert done.returncode == 2
        assert "new: 'c'; gone: 'b'" in done.stderr


class TestBreakRound:
    """Regressions from trying to break durable runs."""

    def test_bad_saved_times_are_a_state_error(self, write_tasks: WriteTasks) -> None:
        graph = trt.load_task_file(write_tasks(command("a", "true")))
        for bad in ("garbage", "2026-01-01T00:00:00"):
            record = trt.TaskRecord(
                status="running",
                definition_hash=definition_hash(graph["a"]),
                running=RunningAttempt(attempt=1, started_at=bad),
            )
            previous = saved_run(graph, a=record)

            with pytest.raises(trt.StateError, match=r"bad time at \$\.tasksById\.a"):
                check_same_run(graph, previous)

    def test_same_name_other_folder_names_both_paths(
        self, write_tasks: WriteTasks, tmp_path: Path
    ) -> None:
        graph = trt.load_task_file(write_tasks(command("a", "true")))
        other = msgspec.structs.replace(
            saved_run(graph), task_file_path="/elsewhere/tasks.json"
        )

        with pytest.raises(trt.StateError, match=r"'/elsewhere/tasks\.json', not '/"):
            check_same_run(graph, other)

    def test_cancel_after_is_not_carried_into_a_resume(
        self, write_tasks: WriteTasks
    ) -> None:
        path = write_tasks(command("slow", "sleep", "0.6"))

        first = run_cli("run", str(path), "--cancel-after", "100", "--concurrency", "2")
        second = run_cli("run", str(path), "--resume")

        assert first.returncode == 1
        assert second.returncode == 0, second.stderr
        report = json.loads((cli_cwd() / "reports" / "latest.json").read_text())
        assert report["options"]["cancelAfterMs"] is None
        assert report["options"]["concurrency"] == 2

    def test_the_resume_hint_is_quoted_for_the_shell(
        self, write_tasks: WriteTasks, tmp_path: Path
    ) -> None:
        path = write_tasks(command("bad", "false"), name="my tasks.json")

        done = run_cli("run", str(path), "--state-dir", "st 3", "--shutdown", "drain")
        status = run_cli("status", "--state-dir", "st 3")

        assert done.returncode == 1
        assert status.stdout.endswith(
            f"resume:    trt run '{path}' --resume --state-dir 'st 3'\n"
        )

    def test_status_for_another_file_is_refused(self, write_tasks: WriteTasks) -> None:
        one = write_tasks(command("a", "true"), name="one.json")
        two = write_tasks(command("a", "true"), name="two.json")
        run_cli("run", str(one))

        done = run_cli("run", "--status", str(two))

        assert done.returncode == 2
        assert f"is of {str(one)!r}, not {str(two)!r}" in done.stderr

    def test_a_bad_timeout_time_is_a_state_error(self, write_tasks: WriteTasks) -> None:
        graph = trt.load_task_file(write_tasks(command("a", "true")))
        bad = msgspec.structs.replace(attempt("a", 1, "timed_out"), timed_out_at="x")
        record = msgspec.structs.replace(done(graph, "a", "timed_out"), attempts=(bad,))

        with pytest.raises(trt.StateError, match=r"a\.attempts\[0\]\.timedOutAt"):
            check_same_run(graph, saved_run(graph, a=record))

    def test_status_takes_no_run_flags(self) -> None:
        done = run_cli("run", "--status", "--resume")

        assert done.returncode == 2
        assert done.stderr == (
            "trt: error: --status shows the saved run; it takes no --resume\n"
        )

    def test_a_file_named_like_a_flag_gets_a_hint_that_works(self) -> None:
        document = {"version": 1, "tasks": [command("bad", "false")]}
        (cli_cwd() / "-t.json").write_text(json.dumps(document))

        run_cli("run", "--", "-t.json")
        status = run_cli("status")
        hint = status.stdout.splitlines()[-1].split()[1:]
        again = run_cli(*hint[1:])

        assert hint == ["trt", "run", "./-t.json", "--resume"]
        assert again.returncode == 1, again.stderr
        assert "resumed run" in again.stderr

    def test_json_without_status_is_refused(self, write_tasks: WriteTasks) -> None:
        done = run_cli("run", str(write_tasks(command("a", "true"))), "--json")

        assert done.returncode == 2
        assert (
            done.stderr
            == "trt: error: --json: only with --status (trt status --json)\n"
        )
