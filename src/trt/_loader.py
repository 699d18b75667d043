"""Read a task file, report every problem in it, and build the task model.

Validation runs field by field against the structs in ``_spec`` rather than
decoding the whole document in one call: msgspec stops at the first error,
and a user fixing a file wants every problem in one pass. Relations between
tasks (duplicates, missing or self dependencies, cycles) are checked only
once every id is known. This module imports no trio, so ``trt validate``
starts fast.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import msgspec

from trt._exceptions import TaskFileError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from trt._model import Task, TaskGraph
from trt._spec import (
    ENV_NAME_PATTERN,
    EXPORT_PATTERN,
    ID_PATTERN,
    NO_NUL_PATTERN,
    TASK_KINDS,
    AnyTaskSpec,
    FunctionTaskSpec,
    TaskFileSpec,
)

# Long values are cut in messages so one bad field cannot flood the terminal.
MAX_SHOWN_VALUE: Final = 60

# Past this many problems the rest are counted, not listed: a generated file
# with one systematic mistake would otherwise print megabytes.
MAX_PROBLEMS_SHOWN: Final = 100

# "Did you mean" compares a bad id with every id; beyond this many ids the
# cost grows quadratically for little benefit.
MAX_IDS_FOR_SUGGESTIONS: Final = 1000

# Cycles longer than this are shown by their two ends.
MAX_CYCLE_SHOWN: Final = 20

_MSGSPEC_PATH = re.compile(
    r"^(?P<msg>.*?)(?: - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`)?$", re.S
)


def load_task_file(path: str | os.PathLike[str]) -> TaskGraph:
    """Read, validate and normalize the task file at ``path``.

    Args:
        path: a ``.json`` (or ``.toml``) task file.

    Returns:
        The scheduler-ready task graph, tasks in file order.

    Raises:
        TaskFileError: when the file cannot be read or parsed, or when any
            field or relation is invalid; it lists every problem found.
    """
    from trt._model import TaskGraph

    checked = _validate(path)
    tasks = tuple(
        _normalize(index, spec, checked.base_dir) for index, spec in checked.specs
    )
    return TaskGraph(tasks, source=checked.source, metadata=checked.metadata)


def check_task_file(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Validate the task file at ``path`` and return its ids in file order.

    The same checks as :func:`load_task_file`, without building the model,
    for ``trt validate``.

    Raises:
        TaskFileError: as :func:`load_task_file` does.
    """
    return tuple(spec.id for _, spec in _validate(path).specs)


# The largest task file read: a million tasks take about 80 MiB, and a
# path such as /dev/zero must end in an error, not fill the memory.
MAX_FILE_BYTES: Final = 256 * 2**20


class _Checked(NamedTuple):
    """A document that passed every check, not yet normalized."""

    source: str
    base_dir: str
    specs: list[tuple[int, AnyTaskSpec]]
    metadata: dict[str, Any]


def _validate(path: str | os.PathLike[str]) -> _Checked:
    shown = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            # A regular file's size is known unread; a pipe's only by reading.
            size = os.fstat(handle.fileno()).st_size
            data = b"" if size > MAX_FILE_BYTES else handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise TaskFileError(
            shown, [f"{shown}: cannot read the file: {reason}"]
        ) from None
    if max(size, len(data)) > MAX_FILE_BYTES:
        limit = MAX_FILE_BYTES // 2**20
        problem = f"{shown}: larger than {limit} MiB; split it into several files"
        raise TaskFileError(shown, [problem])
    base_dir = os.path.dirname(os.path.realpath(path))
    # Some editors start UTF-8 files with a byte-order mark; JSON allows a
    # reader to ignore it, and so does trt.
    data = data.removeprefix(b"\xef\xbb\xbf")
    if not data.strip():
        kind = "TOML" if shown.endswith(".toml") else "JSON"
        problem = f"{shown}: the file is empty; expected a {kind} task file"
        raise TaskFileError(shown, [problem])
    checker = _Checker(shown)
    if not shown.endswith(".toml"):
        # Fast path: one C-level decode validates a correct file's fields;
        # only a file with problems pays for the field-by-field pass.
        try:
            document = msgspec.json.decode(data, type=TaskFileSpec)
        except (msgspec.DecodeError, RecursionError):
            pass
        else:
            specs = list(enumerate(document.tasks))
            checker.check_relations([(i, t.id, t.depends_on) for i, t in specs])
            checker.check_module_files(specs, base_dir)
            checker.raise_problems()
            return _Checked(shown, base_dir, specs, document.metadata)
    raw = _parse(shown, data)
    checker.non_finite = dict(_non_finite(raw, "$"))
    specs = checker.check_document(raw)
    checker.check_relations(checker.relations)
    checker.check_module_files(specs, base_dir)
    checker.add_non_finite(raw)
    checker.raise_problems()
    return _Checked(shown, base_dir, specs, raw.get("metadata", {}))


def _parse(shown: str, data: bytes) -> Any:
    """Decode the document without a schema, wrapping syntax errors."""
    if shown.endswith(".toml"):
        import tomllib

        try:
            return tomllib.loads(data.decode("utf-8"))
        except RecursionError:
            raise TaskFileError(shown, [f"{shown}: {_TOO_DEEP}"]) from None
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            problem = f"{shown}: invalid TOML: {exc}"
            raise TaskFileError(shown, [problem]) from None
    try:
        return msgspec.json.decode(data)
    except RecursionError:
        raise TaskFileError(shown, [f"{shown}: {_TOO_DEEP}"]) from None
    except msgspec.DecodeError as exc:
        if str(exc).startswith("Number out of range"):
            # msgspec names no place for a number past a float's range; the
            # standard reader takes it as infinity, which the checks name.
            import json

            with contextlib.suppress(ValueError, RecursionError):
                return json.loads(data)
        raise TaskFileError(shown, [_json_error(shown, data, exc)]) from None


def _non_finite(value: Any, path: str) -> Iterator[tuple[str, float]]:
    """Yield the $-path and value of every infinite or NaN number."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite(item, f"{path}[{index}]")


def _non_finite_problem(value: float) -> str:
    if math.isnan(value):
        return "expected a number; got nan"
    return "a number beyond a 64-bit float's range"


_TOO_DEEP = "nested too deeply to read (thousands of levels of arrays or objects)"


def _json_error(shown: str, data: bytes, exc: msgspec.DecodeError) -> str:
    """Turn msgspec's byte offset into the line and column editors show."""
    message = str(exc)
    found = re.search(r"\(byte (\d+)\)$", message)
    if found is None and message == "Input data was truncated":
        # msgspec gives no place for this one: it is the end of the file.
        message = f"the file ends before the JSON does (byte {len(data)})"
        found = re.search(r"\(byte (\d+)\)$", message)
    if found is None:
        return f"{shown}: invalid JSON: {message}"
    offset = int(found.group(1))
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    reason = message[: found.start()].rstrip()
    reason = reason.removeprefix("JSON is malformed: ")
    return f"{shown}:{line}:{column}: invalid JSON: {reason}"


@functools.cache
def _fields_of(cls: type[msgspec.Struct]) -> dict[str, msgspec.structs.FieldInfo]:
    # msgspec re-evaluates the annotations on every call: cache per class.
    return {f.encode_name: f for f in msgspec.structs.fields(cls)}


def _shown(value: Any) -> str:
    # The file's spelling of the JSON literals, not Python's.
    if value is None or isinstance(value, bool):
        return _JSON_LITERALS[value]
    text = repr(value)
    if len(text) > MAX_SHOWN_VALUE:
        text = text[: MAX_SHOWN_VALUE - 3] + "..."
    return text


_JSON_LITERALS: Final = {None: "null", True: "true", False: "false"}

# What a JSON reader calls the kind of each decoded value.
_JSON_KINDS: Final = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


class _Checker:
    """Collects problems; each message names file, place, field and value."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []
        # (index, id, dependsOn) of every task whose id is usable, even
        # when other fields are not: relations are checked for all of them.
        self.relations: list[tuple[int, str, list[str]]] = []
        # Infinite (or NaN) numbers by $-path: a field check at one of them
        # says that instead of its own message ("expected `int`; got inf").
        self.non_finite: dict[str, float] = {}

    def add_non_finite(self, raw: Any) -> None:
        """Add the infinite numbers no field check reached (in metadata)."""
        left, self.non_finite = self.non_finite, {}
        for path, value in left.items():
            task_id = None
            index = re.match(r"\$\.tasks\[(\d+)\]", path)
            if index is not None:
                item = raw["tasks"][int(index.group(1))]
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    task_id = item["id"]
            self.add(path, _non_finite_problem(value), task_id=task_id)

    def raise_problems(self) -> None:
        """Raise every problem found so far, if there is any."""
        if self.problems:
            problems = self.problems
            raise TaskFileError(self.source, _capped(problems), total=len(problems))

    def add(self, path: str, message: str, *, task_id: str | None = None) -> None:
        if path in self.non_finite:
            message = _non_finite_problem(self.non_finite.pop(path))
        where = f"{self.source}: {path}"
        if task_id is not None:
            where += f" (task {_shown(task_id)})"
        self.problems.append(f"{where}: {message}")

    def check_document(self, raw: Any) -> list[tuple[int, AnyTaskSpec]]:
        if not isinstance(raw, dict):
            found = _JSON_KINDS.get(type(raw), type(raw).__name__)
            self.add("$", f"expected an object with version and tasks, got {found}")
            return []
        for key in raw:
            if key not in _fields_of(TaskFileSpec):
                hint = _did_you_mean(key, _fields_of(TaskFileSpec))
                self.add(f"$.{key}", f"unknown field {key!r}{hint}")
        for name, info in _fields_of(TaskFileSpec).items():
            if name == "tasks":
                continue
            if name in raw:
                self._convert(raw[name], info.type, f"$.{name}")
            elif info.required:
                self.add(f"$.{name}", "required field is missing")
        if "tasks" not in raw:
            self.add("$.tasks", "required field is missing")
            return []
        tasks = raw["tasks"]
        if not isinstance(tasks, list):
            self.add("$.tasks", f"expected an array of tasks, got {_shown(tasks)}")
            return []
        specs = []
        for index, item in enumerate(tasks):
            spec = self._check_task(index, item)
            if spec is not None:
                specs.append((index, spec))
        return specs

    def _check_task(self, index: int, item: Any) -> AnyTaskSpec | None:
        path = f"$.tasks[{index}]"
        if not isinstance(item, dict):
            self.add(path, f"expected a task object, got {_shown(item)}")
            return None
        task_id = item.get("id") if isinstance(item.get("id"), str) else None
        if task_id is not None and re.search(ID_PATTERN, task_id):
            deps = item.get("dependsOn", [])
            deps = (
                [d for d in deps if isinstance(d, str)]
                if isinstance(deps, list)
                else []
            )
            self.relations.append((index, task_id, deps))
        kind = item.get("type")
        cls = TASK_KINDS.get(kind) if isinstance(kind, str) else None
        if cls is None:
            if "type" not in item:
                message = "required field is missing"
            else:
                message = f"unknown task type {_shown(kind)}"
            choices = " or ".join(repr(name) for name in TASK_KINDS)
            self.add(f"{path}.type", f"{message}; expected {choices}", task_id=task_id)
            return None

        # Every field on its own, so that all of a task's problems surface.
        before = len(self.problems)
        fields = _fields_of(cls)
        for key, value in item.items():
            if key == "type":
                continue
            if key not in fields:
                hint = _did_you_mean(key, fields) or _other_kind_hint(key, str(kind))
                self.add(f"{path}.{key}", f"unknown field{hint}", task_id=task_id)
                continue
            if key == "env" and isinstance(value, dict):
                self._check_env(value, f"{path}.env", task_id)
                continue
            self._check_value(value, fields[key].type, f"{path}.{key}", task_id)
        for name, info in fields.items():
            if info.required and name not in item:
                self.add(f"{path}.{name}", "required field is missing", task_id=task_id)
        if len(self.problems) > before:
            return None
        return msgspec.convert(item, cls)

    def _check_env(self, env: dict[Any, Any], path: str, task_id: str | None) -> None:
        # Checked entry by entry: msgspec would name neither the bad key
        # nor the variable whose value is wrong.
        for name, value in env.items():
            if not isinstance(name, str) or not re.search(ENV_NAME_PATTERN, name):
                message = f"invalid variable name {_shown(name)}; no '=' or NUL allowed"
                self.add(path, message, task_id=task_id)
            elif not isinstance(value, str):
                message = f"expected a string value; got {_shown(value)}"
                self.add(f"{path}.{name}", message, task_id=task_id)
            elif "\x00" in value:
                message = f"a value cannot hold a NUL byte; got {_shown(value)}"
                self.add(f"{path}.{name}", message, task_id=task_id)

    def _check_value(
        self, value: Any, type_: Any, path: str, task_id: str | None
    ) -> None:
        """Check a value, descending into nested structs and lists.

        msgspec stops at the first error inside a value; going down one
        level at a time finds every bad list item and nested field.
        """
        struct = _struct_in(type_)
        if struct is not None and isinstance(value, dict):
            fields = _fields_of(struct)
            for key, item in value.items():
                if key not in fields:
                    hint = _did_you_mean(key, fields)
                    self.add(f"{path}.{key}", f"unknown field{hint}", task_id=task_id)
                else:
                    self._check_value(item, fields[key].type, f"{path}.{key}", task_id)
            for name, info in fields.items():
                if info.required and name not in value:
                    message = "required field is missing"
                    self.add(f"{path}.{name}", message, task_id=task_id)
            return
        item_type = _list_item(type_)
        if item_type is not None and isinstance(value, list):
            for position, item in enumerate(value):
                self._check_value(item, item_type, f"{path}[{position}]", task_id)
            return
        self._convert(value, type_, path, task_id)

    def _convert(
        self, value: Any, type_: Any, path: str, task_id: str | None = None
    ) -> None:
        try:
            msgspec.convert(value, type_)
        except msgspec.ValidationError as exc:
            path, message = _explain(str(exc), value, path)
            self.add(path, message, task_id=task_id)

    def check_relations(self, tasks: Sequence[tuple[int, str, list[str]]]) -> None:
        """Check ids and dependencies once every id is known."""
        seen: dict[str, int] = {}
        for index, task_id, _ in tasks:
            if task_id in seen:
                first = seen[task_id]
                message = f"duplicate id {task_id!r}; first used by $.tasks[{first}]"
                self.add(f"$.tasks[{index}].id", message, task_id=task_id)
            else:
                seen[task_id] = index
        # Suggestions compare against every id: past a few thousand ids
        # that is quadratic, and a typo is unlikely to be the problem.
        suggest = len(seen) <= MAX_IDS_FOR_SUGGESTIONS
        graph: dict[str, list[str]] = {}
        for index, task_id, depends_on in tasks:
            listed: set[str] = set()
            for position, dep in enumerate(depends_on):
                place = f"$.tasks[{index}].dependsOn[{position}]"
                if dep == task_id:
                    self.add(place, f"task depends on itself: {dep!r}", task_id=task_id)
                elif dep in listed:
                    self.add(place, f"{dep!r} is listed twice", task_id=task_id)
                elif dep not in seen:
                    # Past the problems that will be shown, skip the cost.
                    wanted = suggest and len(self.problems) < MAX_PROBLEMS_SHOWN
                    hint = _did_you_mean(dep, seen) if wanted else ""
                    message = f"depends on unknown task {dep!r}{hint}"
                    self.add(place, message, task_id=task_id)
                listed.add(dep)
            graph.setdefault(task_id, [])
            graph[task_id].extend(
                d for d in dict.fromkeys(depends_on) if d in seen and d != task_id
            )
        for cycle in _find_cycles(graph, [task_id for _, task_id, _ in tasks]):
            index = seen[cycle[0]]
            self.add(
                f"$.tasks[{index}].dependsOn",
                f"dependency cycle: {_cycle_path(cycle)}",
                task_id=cycle[0],
            )

    def check_module_files(
        self, specs: Sequence[tuple[int, AnyTaskSpec]], base_dir: str
    ) -> None:
        for index, spec in specs:
            if isinstance(spec, FunctionTaskSpec) and _is_file_module(spec.module):
                full = os.path.join(base_dir, spec.module)
                if os.path.isdir(full):
                    message = f"{spec.module!r} is a folder, not a Python file"
                elif not os.path.isfile(full):
                    message = f"no such file {spec.module!r} (looked in {base_dir})"
                else:
                    continue
                self.add(f"$.tasks[{index}].module", message, task_id=spec.id)


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_PROBLEMS_SHOWN:
        return problems
    hidden = len(problems) - MAX_PROBLEMS_SHOWN
    return [*problems[:MAX_PROBLEMS_SHOWN], f"... and {hidden} more problems"]


def _cycle_path(cycle: list[str]) -> str:
    """Name a cycle by its path, shortened when it is very long."""
    path = [*cycle, cycle[0]]
    if len(path) > MAX_CYCLE_SHOWN:
        half = MAX_CYCLE_SHOWN // 2
        skipped = len(path) - 2 * half
        path = [*path[:half], f"... {skipped} more ...", *path[-half:]]
    return " -> ".join(path)


def _struct_in(type_: Any) -> type[msgspec.Struct] | None:
    """Return the Struct class in ``type_`` (as in ``RetrySpec | UnsetType``)."""
    candidates = typing.get_args(type_) if typing.get_origin(type_) else (type_,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, msgspec.Struct):
            return candidate
    return None


def _list_item(type_: Any) -> Any:
    """Return the item type of a ``list[...]`` in ``type_``, else None."""
    candidates = [type_]
    if typing.get_origin(type_) in (types.UnionType, typing.Union):
        candidates = list(typing.get_args(type_))
    for candidate in candidates:
        if typing.get_origin(candidate) is list:
            return typing.get_args(candidate)[0]
    return None


def _explain(error: str, value: Any, path: str) -> tuple[str, str]:
    """Reword a msgspec error as (full path, "expected ...; got VALUE")."""
    found = _MSGSPEC_PATH.match(error)
    assert found is not None  # the pattern matches any text
    message = found.group("msg")
    inner = found.group("path") or ""
    # msgspec names a bad mapping key as "at `key` in `$.env`".
    is_key = found.group("key") is not None
    bad = _pick(value, inner)
    message = re.sub(r", got `[^`]*`$", "", message)
    if message.startswith("Invalid enum value") or path.endswith("$.version"):
        choices = _choices(path + inner)
        message = f"expected one of {choices}" if choices else "unexpected value"
        if bad == "canceled":
            message += " (canceled work is never retried)"
    elif "matching regex" in message:
        message = _PATTERN_MEANINGS.get(message.split("regex ", 1)[1], message)
    else:
        message = message[0].lower() + message[1:]
    if is_key:
        keys = [k for k in bad if isinstance(k, str)] if isinstance(bad, dict) else []
        return path + inner, f"bad key: {message}; keys are {_shown(keys)}"
    return path + inner, f"{message}; got {_shown(bad)}"


# What each pattern in the schema means, for messages that a person reads.
_PATTERN_MEANINGS = {
    repr(ID_PATTERN): "expected an id of letters, digits, '_', '-', '.', ':'",
    repr(EXPORT_PATTERN): "expected a Python identifier (the function's name)",
    repr(NO_NUL_PATTERN): "a NUL byte is not allowed here",
}


def _choices(path: str) -> str:
    """Name the allowed values of the enumerated field at ``path``."""
    from typing import get_args

    from trt._spec import RetryOn

    if path.endswith(".version"):
        return "1 (the only format version so far)"
    if ".retryOn[" in path:
        return ", ".join(repr(choice) for choice in get_args(RetryOn))
    return ""


def _pick(value: Any, inner: str) -> Any:
    """Follow a msgspec sub-path such as ``[2].name`` into ``value``."""
    for step in re.findall(r"\[(\d+)\]|\.([^.\[]+)|\[([^\]]+)\]", inner):
        index, key, other = step
        try:
            if index:
                value = value[int(index)]
            elif key or other:
                value = value[key or other]
        except (KeyError, IndexError, TypeError):
            break
    return value


def _other_kind_hint(key: str, kind: str) -> str:
    """Say which task type a field belongs to, when it is another one."""
    for other, cls in TASK_KINDS.items():
        if other != kind and key in _fields_of(cls):
            return f"; {key!r} belongs to {other} tasks"
    return ""


def _did_you_mean(name: str, known: Mapping[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    if not close:
        lowered = {key.lower(): key for key in known}
        match = lowered.get(name.lower())
        close = [match] if match else []
    return f"; did you mean {close[0]!r}?" if close else ""


def _find_cycles(graph: Mapping[str, list[str]], order: list[str]) -> list[list[str]]:
    """Return one path per cycle found, each starting at its first task.

    Iterative depth-first search, so a chain of thousands of tasks cannot
    exhaust Python's recursion limit.
    """
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph, white)
    cycles: list[list[str]] = []
    for root in order:
        if color[root] != white:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = []
        color[root] = grey
        path.append(root)
        while stack:
            node, position = stack[-1]
            deps = graph[node]
            if position < len(deps):
                stack[-1] = (node, position + 1)
                dep = deps[position]
                if color[dep] == white:
                    color[dep] = grey
                    path.append(dep)
                    stack.append((dep, 0))
                elif color[dep] == grey:
                    cycles.append(path[path.index(dep) :])
            else:
                color[node] = black
                path.pop()
                stack.pop()
    return cycles


def _is_file_module(module: str) -> bool:
    return module.endswith(".py") or "/" in module or os.sep in module


def _normalize(index: int, spec: AnyTaskSpec, base_dir: str) -> Task:
    """Resolve paths and defaults; the result no longer needs the file."""
    from trt._model import CommandTask, FunctionTask, RetryPolicy, frozen_mapping

    retries = RetryPolicy()
    if spec.retries is not msgspec.UNSET:
        retry_on = spec.retries.retry_on
        retries = RetryPolicy(
            max_attempts=spec.retries.max_attempts,
            backoff_ms=spec.retries.backoff_ms,
            factor=float(spec.retries.factor),
            retry_on=frozenset(() if retry_on is msgspec.UNSET else retry_on),
        )
    common: dict[str, Any] = {
        "id": spec.id,
        "index": index,
        "timeout_ms": None if spec.timeout_ms is msgspec.UNSET else spec.timeout_ms,
        "retries": retries,
        "depends_on": tuple(dict.fromkeys(spec.depends_on)),
        "metadata": frozen_mapping(spec.metadata),
    }
    if isinstance(spec, FunctionTaskSpec):
        module_path = None
        if _is_file_module(spec.module):
            module_path = os.path.realpath(os.path.join(base_dir, spec.module))
        return FunctionTask(
            module=spec.module,
            module_path=module_path,
            export=spec.export,
            import_root=base_dir,
            **common,
        )
    cwd = None
    if spec.cwd is not msgspec.UNSET:
        cwd = os.path.normpath(os.path.join(base_dir, spec.cwd))
    return CommandTask(
        argv=(spec.command, *spec.args),
        cwd=cwd,
        env=frozen_mapping(spec.env),
        **common,
    )
