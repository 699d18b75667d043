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
# small, shell- and URL-safe alphabet. "(?!\n)": Python's "$" also matches
# before a final newline, which an id must not end with; JSON Schema's
# (ECMAScript) regexes read the pattern the same way.
ID_PATTERN = r"^[A-Za-z0-9_.:-]+$(?!\n)"

# Long enough for any real name; short enough that prefixing each output
# line with it stays cheap.
MAX_ID_LENGTH = 200

# An export is looked up with getattr, so it must be a Python identifier.
EXPORT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$(?!\n)"

# The operating system cannot pass a NUL byte in an argument, a path or an
# environment value: refuse it here rather than fail at spawn time.
NO_NUL_PATTERN = r"^[^\x00]*$"

# Upper bounds that keep time arithmetic finite: a year for a deadline, a
# day for one backoff wait, and a growth factor far beyond any real use.
MAX_TIMEOUT_MS = 365 * 24 * 3600 * 1000
MAX_BACKOFF_MS = 24 * 3600 * 1000
MAX_FACTOR = 100

# An environment variable name cannot be empty or contain "=" or NUL.
ENV_NAME_PATTERN = r"^[^=\x00]+$"

TaskId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=ID_PATTERN,
        description="Unique task id: letters, digits, '_', '-', '.', ':'.",
    ),
]
NonEmptyStr = Annotated[str, Meta(min_length=1, pattern=NO_NUL_PATTERN)]
PlainStr = Annotated[str, Meta(pattern=NO_NUL_PATTERN)]
PositiveMs = Annotated[int, Meta(gt=0, le=MAX_TIMEOUT_MS)]

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
    backoff_ms: Annotated[int, Meta(ge=0, le=MAX_BACKOFF_MS)] = 0
    factor: Annotated[float, Meta(ge=1, le=MAX_FACTOR)] = 2.0
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
    args: list[PlainStr] = []
    # Only commands get these: a function runs inside trt's own process,
    # whose working folder and environment are shared by every task.
    cwd: NonEmptyStr | UnsetType = UNSET
    env: dict[Annotated[str, Meta(pattern=ENV_NAME_PATTERN)], PlainStr] = {}


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
