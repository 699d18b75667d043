"""The task file's schema, as msgspec Structs.

These structs are the single source of the file format: the loader
validates against them field by field and ``trt schema`` publishes the JSON
Schema generated from them, so the two can never disagree.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

# Ids appear in file names, log prefixes and report keys, so they stay in a
# small, shell- and URL-safe alphabet.
ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"

# An export is looked up with getattr, so it must be a Python identifier.
EXPORT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

# An environment variable name cannot be empty or contain "=" or NUL.
ENV_NAME_PATTERN = r"^[^=\x00]+$"

TaskId = Annotated[
    str,
    Meta(
        min_length=1,
        pattern=ID_PATTERN,
        description="Unique task id: letters, digits, '_', '-', '.', ':'.",
    ),
]
NonEmptyStr = Annotated[str, Meta(min_length=1)]
PositiveMs = Annotated[int, Meta(gt=0)]

# What a retry policy may name: final statuses and failure kinds. Cancellation
# is absent on purpose: canceled work is never retried.
RetryOn = Literal[
    "failed",
    "timed_out",
    "non_zero_exit",
    "spawn_error",
    "thrown",
    "rejected",
    "timeout",
]


class FileStruct(
    msgspec.Struct,
    forbid_unknown_fields=True,
    rename="camel",
    omit_defaults=True,
    frozen=True,
    kw_only=True,
):
    """Base of every struct decoded from a task file.

    ``forbid_unknown_fields`` makes a typo such as ``dependson`` an error
    instead of a silently ignored key; ``rename="camel"`` maps the file's
    camelCase keys to snake_case attributes; ``omit_defaults`` keeps
    re-encoded definitions minimal; ``frozen`` because a definition never
    changes once read.
    """


class RetrySpec(FileStruct, frozen=True):
    """How often a failing task is tried again, and how long it waits."""

    max_attempts: Annotated[int, Meta(ge=1)] = 1
    backoff_ms: Annotated[int, Meta(ge=0)] = 0
    factor: Annotated[float, Meta(ge=1)] = 2.0
    retry_on: list[RetryOn] | UnsetType = UNSET


class TaskSpec(FileStruct, frozen=True, tag_field="type"):
    """Fields shared by every kind of task."""

    id: TaskId
    timeout_ms: PositiveMs | UnsetType = UNSET
    retries: RetrySpec | UnsetType = UNSET
    depends_on: list[TaskId] = []
    metadata: dict[str, Any] = {}


class CommandTaskSpec(TaskSpec, tag="command", frozen=True, kw_only=True):
    """A program started with an argument list, never through a shell."""

    command: NonEmptyStr
    args: list[str] = []
    # Only commands get these: a function runs inside trt's own process,
    # whose working folder and environment are shared by every task.
    cwd: NonEmptyStr | UnsetType = UNSET
    env: dict[Annotated[str, Meta(pattern=ENV_NAME_PATTERN)], str] = {}


class FunctionTaskSpec(TaskSpec, tag="function", frozen=True, kw_only=True):
    """A Python callable: ``module`` is a ``.py`` path or a dotted name."""

    module: NonEmptyStr
    export: Annotated[str, Meta(pattern=EXPORT_PATTERN)]


AnyTaskSpec = CommandTaskSpec | FunctionTaskSpec


class TaskFileSpec(FileStruct, frozen=True, kw_only=True):
    """The whole document: a format version, free metadata and the tasks."""

    version: Literal[1]
    metadata: dict[str, Any] = {}
    tasks: list[AnyTaskSpec]


TASK_KINDS: dict[str, type[CommandTaskSpec] | type[FunctionTaskSpec]] = {
    "command": CommandTaskSpec,
    "function": FunctionTaskSpec,
}


def json_schema() -> dict[str, Any]:
    """Return the JSON Schema of a task file, for editors and CI checks."""
    schema = msgspec.json.schema(TaskFileSpec)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "trt task file"
    return schema
