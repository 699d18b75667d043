"""Contract tests for loading and validating task files."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

import trt
from tests.conftest import TASKS, WriteTasks, command, function

INVALID = TASKS / "invalid"

# One fixture per validation rule, with the one problem line it must give.
# Each line names the file, the place ($-path), the task and the bad value.
EXPECTED = {
    "json-syntax": r":4:54: invalid JSON: trailing comma in object",
    "empty-file": r": the file is empty; expected a JSON task file",
    "json-truncated": r":5:1: invalid JSON: the file ends before the JSON does",
    "number-out-of-range": (
        r"\$\.tasks\[0\]\.timeoutMs \(task 'a'\): "
        r"a number beyond a 64-bit float's range"
    ),
    "not-an-object": r"\$: expected an object with version and tasks, got an array",
    "missing-version": r"\$\.version: required field is missing",
    "wrong-version": (
        r"\$\.version: expected one of 1 \(the only format version so far\); got 2"
    ),
    "unknown-top-field": (r"\$\.task: unknown field 'task'; did you mean 'tasks'\?"),
    "tasks-not-a-list": r"\$\.tasks: expected an array of tasks, got \{'id': 'a'\}",
    "task-not-an-object": r"\$\.tasks\[0\]: expected a task object, got 'sleep 1'",
    "missing-id": r"\$\.tasks\[0\]\.id: required field is missing",
    "empty-id": (
        r"\$\.tasks\[0\]\.id \(task ''\): "
        r"expected `str` of length >= 1; got ''"
    ),
    "bad-id-characters": (
        r"\$\.tasks\[0\]\.id \(task 'build step'\): "
        r"expected an id of letters, digits, '_', '-', '\.', ':'; got 'build step'"
    ),
    "missing-type": (
        r"\$\.tasks\[0\]\.type \(task 'a'\): required field is missing; "
        r"expected 'command' or 'function'"
    ),
    "unknown-type": r"\$\.tasks\[0\]\.type \(task 'a'\): unknown task type 'shell'; .*",
    "missing-command": (
        r"\$\.tasks\[0\]\.command \(task 'a'\): "
        r"required field is missing"
    ),
    "empty-command": r"\$\.tasks\[0\]\.command \(task 'a'\): .* length >= 1; got ''",
    "args-not-strings": (
        r"\$\.tasks\[0\]\.args\[0\] \(task 'a'\): "
        r"expected `str`; got 1"
    ),
    "missing-module": r"\$\.tasks\[0\]\.module \(task 'a'\): required field is missing",
    "module-file-missing": (
        r"\$\.tasks\[0\]\.module \(task 'a'\): no such file 'no_such_file\.py' .*"
    ),
    "bad-export": (
        r"\$\.tasks\[0\]\.export \(task 'a'\): "
        r"expected a Python identifier \(the function's name\); got 'not-an-identifier'"
    ),
    "unknown-task-field": (
        r"\$\.tasks\[0\]\.dependson \(task 'a'\): unknown field; "
        r"did you mean 'dependsOn'\?"
    ),
    "field-of-other-kind": (
        r"\$\.tasks\[0\]\.module \(task 'a'\): "
        r"unknown field; 'module' belongs to function tasks"
    ),
    "function-with-cwd": (
        r"\$\.tasks\[0\]\.cwd \(task 'a'\): "
        r"unknown field; 'cwd' belongs to command tasks"
    ),
    "bad-timeout": (
        r"\$\.tasks\[0\]\.timeoutMs \(task 'a'\): "
        r"expected `int` >= 1; got 0"
    ),
    "timeout-not-integer": (
        r"\$\.tasks\[0\]\.timeoutMs \(task 'a'\): "
        r"expected `int`; got 1\.5"
    ),
    "bad-retries": (
        r"\$\.tasks\[0\]\.retries\.maxAttempts \(task 'a'\): expected `int` >= 1; got 0"
    ),
    "bad-retry-on": (
        r"\$\.tasks\[0\]\.retries\.retryOn\[0\] \(task 'a'\): expected one of .*"
        r"\(canceled work is never retried\); got 'canceled'"
    ),
    "bad-backoff": (
        r"\$\.tasks\[0\]\.retries\.backoffMs \(task 'a'\): expected `int` >= 0; got -1"
    ),
    "bad-factor": (
        r"\$\.tasks\[0\]\.retries\.factor \(task 'a'\): "
        r"expected `float` >= 1\.0; got 0\.5"
    ),
    "nul-in-args": (
        r"\$\.tasks\[0\]\.args\[0\] \(task 'a'\): "
        r"a NUL byte is not allowed here; got 'a\\x00b'"
    ),
    "bad-env": r"\$\.tasks\[0\]\.env \(task 'a'\): invalid variable name 'A=B'; .*",
    "env-value-not-string": (
        r"\$\.tasks\[0\]\.env\.N \(task 'a'\): expected a string value; got 1"
    ),
    "bad-cwd": r"\$\.tasks\[0\]\.cwd \(task 'a'\): .* length >= 1; got ''",
    "metadata-not-object": (
        r"\$\.tasks\[0\]\.metadata \(task 'a'\): expected `object`; got 'x'"
    ),
    "depends-on-not-list": (
        r"\$\.tasks\[0\]\.dependsOn \(task 'a'\): expected `array`; got 'b'"
    ),
    "duplicate-id": (
        r"\$\.tasks\[1\]\.id \(task 'a'\): "
        r"duplicate id 'a'; first used by \$\.tasks\[0\]"
    ),
    "missing-dependency": (
        r"\$\.tasks\[1\]\.dependsOn\[0\] \(task 'test'\): depends on unknown task "
        r"'biuld'; did you mean 'build'\?"
    ),
    "self-dependency": (
        r"\$\.tasks\[0\]\.dependsOn\[0\] \(task 'a'\): task depends on itself: 'a'"
    ),
    "duplicate-dependency": (
        r"\$\.tasks\[1\]\.dependsOn\[1\] \(task 'b'\): 'a' is listed twice"
    ),
    "cycle": (
        r"\$\.tasks\[0\]\.dependsOn \(task 'a'\): dependency cycle: a -> c -> b -> a"
    ),
}


def test_every_invalid_fixture_has_an_expectation() -> None:
    fixtures = {path.stem for path in INVALID.glob("*.json")}

    assert fixtures - {"many-problems"} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=sorted(EXPECTED))
def test_invalid_fixture_names_file_place_and_value(name: str) -> None:
    path = INVALID / f"{name}.json"

    with pytest.raises(trt.TaskFileError) as info:
        trt.load_task_file(path)

    assert len(info.value.problems) == 1, info.value.problems
    line = info.value.problems[0]
    assert line.startswith(str(path))
    assert re.fullmatch(rf"{re.escape(str(path))}(?:: )?{EXPECTED[name]}", line), line


def test_all_problems_are_reported_in_one_pass() -> None:
    path = INVALID / "many-problems.json"

    with pytest.raises(trt.TaskFileError) as info:
        trt.load_task_file(path)

    places = [line.split(": ")[1] for line in info.value.problems]
    assert places == [
        "$.tasks[1].id (task 'bad one')",
        "$.tasks[1].timeoutMs (task 'bad one')",
        "$.tasks[2].dependson (task 'typo')",
        "$.tasks[3].id (task 'ok')",
        "$.tasks[4].dependsOn[0] (task 'orphan')",
    ]
    assert str(info.value).startswith(f"{path}: 5 problems\n")


def test_missing_file_is_a_task_file_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"

    with pytest.raises(trt.TaskFileError, match=r"cannot read the file"):
        trt.load_task_file(path)


def test_every_cycle_is_named(write_tasks: WriteTasks) -> None:
    path = write_tasks(
        command("a", "true", dependsOn=["b"]),
        command("b", "true", dependsOn=["a"]),
        command("c", "true", dependsOn=["c2"]),
        command("c2", "true", dependsOn=["c"]),
    )

    with pytest.raises(trt.TaskFileError) as info:
        trt.load_task_file(path)

    cycles = [line.rsplit(": ", 1)[1] for line in info.value.problems]
    assert cycles == ["a -> b -> a", "c -> c2 -> c"]


def test_long_chain_is_not_a_cycle(write_tasks: WriteTasks) -> None:
    """Cycle search is iterative: a 5,000-task chain must not recurse."""
    tasks = [command("t0", "true")]
    tasks += [command(f"t{i}", "true", dependsOn=[f"t{i - 1}"]) for i in range(1, 5000)]

    graph = trt.load_task_file(write_tasks(*tasks))

    assert len(graph) == 5000
    assert graph.dependents("t0") == ("t1",)


def test_normalized_model_resolves_paths(
    write_tasks: WriteTasks, tmp_path: Path
) -> None:
    (tmp_path / "jobs.py").write_text("def go(context):\n    return 1\n")
    path = write_tasks(
        command("a", "echo", "x", cwd="sub", env={"K": "V"}, timeoutMs=50),
        function("b", "jobs.py", "go", dependsOn=["a"], retries={"maxAttempts": 3}),
    )

    graph = trt.load_task_file(path)

    a, b = graph.tasks
    assert isinstance(a, trt.CommandTask)
    assert a.argv == ("echo", "x")
    assert a.cwd == str(tmp_path / "sub")
    assert dict(a.env) == {"K": "V"}
    assert a.timeout_ms == 50
    assert isinstance(b, trt.FunctionTask)
    assert b.module_path == str(tmp_path / "jobs.py")
    assert b.depends_on == ("a",)
    assert b.retries == trt.RetryPolicy(max_attempts=3)
    assert graph.dependents("a") == ("b",)


def test_model_is_immutable(write_tasks: WriteTasks) -> None:
    graph = trt.load_task_file(write_tasks(command("a", "true", env={"K": "V"})))
    task = graph.tasks[0]

    with pytest.raises(AttributeError):
        task.id = "b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        task.env["K"] = "W"  # type: ignore[index]


def test_toml_task_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "tasks.toml"
    path.write_text(
        'version = 1\n[[tasks]]\nid = "a"\ntype = "command"\ncommand = "true"\n'
    )

    graph = trt.load_task_file(path)

    assert graph.ids == ("a",)


def test_shipped_fixtures_are_valid() -> None:
    for name in ("one-hundred-delays", "mixed-results", "dag"):
        graph = trt.load_task_file(TASKS / f"{name}.json")
        assert len(graph) > 0


def test_schema_describes_the_file_format() -> None:
    schema = trt.json_schema()

    definitions = schema["$defs"]
    command_fields = definitions["CommandTaskSpec"]["properties"]
    assert {"id", "type", "command", "args", "dependsOn", "timeoutMs"} <= set(
        command_fields
    )
    assert definitions["CommandTaskSpec"]["additionalProperties"] is False


def test_nested_and_relation_problems_all_surface(write_tasks: WriteTasks) -> None:
    """Problems inside retries, and relations of a broken task, all show."""
    retries = {"maxAttempts": 0, "backoffMs": -1, "retryOn": ["canceled", "nope"]}
    path = write_tasks(
        command("a", "true", retries=retries, dependsOn=["zz", "a"], timeoutMs=0)
    )

    with pytest.raises(trt.TaskFileError) as info:
        trt.load_task_file(path)

    places = [line.split(": ")[1].split(" ")[0] for line in info.value.problems]
    assert places == [
        "$.tasks[0].retries.maxAttempts",
        "$.tasks[0].retries.backoffMs",
        "$.tasks[0].retries.retryOn[0]",
        "$.tasks[0].retries.retryOn[1]",
        "$.tasks[0].timeoutMs",
        "$.tasks[0].dependsOn[0]",
        "$.tasks[0].dependsOn[1]",
    ]


def test_thousands_of_problems_are_counted_not_all_listed(
    write_tasks: WriteTasks,
) -> None:
    tasks = [command(f"t{i}", "true", dependsOn=[f"missing{i}"]) for i in range(3000)]

    with pytest.raises(trt.TaskFileError) as info:
        trt.load_task_file(write_tasks(*tasks))

    assert info.value.total == 3000
    assert len(info.value.problems) == 101
    assert info.value.problems[-1] == "... and 2900 more problems"
    assert str(info.value).startswith(f"{write_tasks(*tasks)}: 3000 problems\n")


def test_long_cycles_are_shortened(write_tasks: WriteTasks) -> None:
    tasks = [
        command(f"t{i}", "true", dependsOn=[f"t{(i + 1) % 50}"]) for i in range(50)
    ]

    with pytest.raises(trt.TaskFileError) as info:
        trt.load_task_file(write_tasks(*tasks))

    (line,) = info.value.problems
    assert line.endswith(
        "dependency cycle: t0 -> t1 -> t2 -> t3 -> t4 -> t5 -> t6 -> t7 -> t8 -> t9"
        " -> ... 31 more ... -> t41 -> t42 -> t43 -> t44 -> t45 -> t46 -> t47"
        " -> t48 -> t49 -> t0"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[" * 100000 + b"]" * 100000, "nested too deeply to read"),
        (b'\xef\xbb\xbf{"version": 1, "tasks": []}', None),
    ],
    ids=["deep-nesting", "byte-order-mark"],
)
def test_awkward_bytes(tmp_path: Path, data: bytes, message: str | None) -> None:
    path = tmp_path / "tasks.json"
    path.write_bytes(data)

    if message is None:
        assert len(trt.load_task_file(path)) == 0
        return
    with pytest.raises(trt.TaskFileError, match=message):
        trt.load_task_file(path)


def test_check_task_file_gives_ids_or_the_same_problems() -> None:
    assert (
        trt.check_task_file(TASKS / "dag.json")
        == trt.load_task_file(TASKS / "dag.json").ids
    )

    path = INVALID / "many-problems.json"
    with pytest.raises(trt.TaskFileError) as checked:
        trt.check_task_file(path)
    with pytest.raises(trt.TaskFileError) as loaded:
        trt.load_task_file(path)
    assert checked.value.problems == loaded.value.problems


def test_values_are_shown_as_the_file_spells_them(write_tasks: WriteTasks) -> None:
    path = write_tasks(command("a", "true", args=[True], dependsOn=None))

    with pytest.raises(trt.TaskFileError) as caught:
        trt.load_task_file(path)

    problems = "\n".join(caught.value.problems)
    assert "dependsOn (task 'a'): expected `array`; got null" in problems
    assert "args[0] (task 'a'): expected `str`; got true" in problems


def test_an_endless_file_is_refused_not_read_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("trt._loader.MAX_FILE_BYTES", 2**20)

    with pytest.raises(trt.TaskFileError) as caught:
        trt.load_task_file("/dev/zero")

    assert caught.value.problems == (
        "/dev/zero: larger than 1 MiB; split it into several files",
    )


def test_numbers_out_of_range_are_named_with_every_other_problem(
    write_tasks: WriteTasks,
) -> None:
    path = write_tasks(name="far.json")
    path.write_text(
        '{"version": 1, "tasks": ['
        '{"id": "a", "type": "command", "command": "true", "timeoutMs": 1e400},'
        '{"id": "b b", "type": "command", "command": "true"},'
        '{"id": "c", "type": "command", "command": "true",'
        ' "metadata": {"x": [1, -1e999]}}]}'
    )

    with pytest.raises(trt.TaskFileError) as caught:
        trt.load_task_file(path)

    far = "a number beyond a 64-bit float's range"
    assert [problem.split(": ", 1)[1] for problem in caught.value.problems] == [
        f"$.tasks[0].timeoutMs (task 'a'): {far}",
        "$.tasks[1].id (task 'b b'): expected an id of letters, digits, "
        "'_', '-', '.', ':'; got 'b b'",
        f"$.tasks[2].metadata.x[1] (task 'c'): {far}",
    ]


def test_a_large_regular_file_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("trt._loader.MAX_FILE_BYTES", 2**20)
    path = tmp_path / "huge.json"
    with path.open("wb") as handle:
        handle.truncate(2**30)  # sparse: a GiB that reading would fill memory with
    reads: list[object] = []
    real_open = open

    class Spy:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __enter__(self) -> Spy:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def fileno(self) -> int:
            return int(self.handle.fileno())

        def read(self, *args: Any) -> bytes:
            reads.append(args)
            return bytes(self.handle.read(*args))

    def spying_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, *args, **kwargs)
        return Spy(handle) if os.fspath(file) == str(path) else handle

    monkeypatch.setattr("builtins.open", spying_open)

    with pytest.raises(trt.TaskFileError, match="larger than 1 MiB"):
        trt.load_task_file(path)

    assert reads == []
