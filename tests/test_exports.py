"""Contract test of the public API surface."""

from __future__ import annotations

import importlib
import inspect

import pytest

import trt

# Classes built to be subclassed or implemented: everything else is final.
OPEN_CLASSES = {
    "Executor",
    "Task",
    "TrtError",
    "TaskFileError",
    "UsageError",
    "StateError",
}


def test_all_is_sorted_and_complete() -> None:
    assert trt.__all__ == sorted(trt.__all__)
    for name in trt.__all__:
        assert getattr(trt, name) is not None


def test_public_objects_claim_the_public_module() -> None:
    for name in trt.__all__:
        value = getattr(trt, name)
        if inspect.isclass(value) and hasattr(value, "__struct_fields__"):
            # msgspec resolves a Struct's annotations through its module.
            assert value.__module__.startswith("trt._"), name
        elif inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__ == "trt", name


def test_public_classes_are_final_unless_meant_to_be_extended() -> None:
    for name in trt.__all__:
        value = getattr(trt, name)
        if not inspect.isclass(value) or name in OPEN_CLASSES:
            continue
        final = getattr(value, "__final__", False)
        subclass_of_struct = value.__mro__[1].__name__ == "ResultStruct"
        assert final or subclass_of_struct, f"{name} should be @final"


def test_unknown_attribute_raises_attribute_error() -> None:
    module = importlib.import_module("trt")

    with pytest.raises(
        AttributeError, match=r"^module 'trt' has no attribute 'does_not_exist'$"
    ):
        module.does_not_exist  # noqa: B018


def test_public_results_decode_back() -> None:
    """A report read back with msgspec gives the same objects."""
    import msgspec

    result = trt.RunResult(
        run_id="r",
        task_file="f.json",
        status="success",
        options=trt.RunOptions(),
        started_at="2026-01-01T00:00:00.000+00:00",
        ended_at="2026-01-01T00:00:01.000+00:00",
        tasks=(),
        metrics=trt.RunMetrics(),
    )

    data = msgspec.json.encode(result)

    assert msgspec.json.decode(data, type=trt.RunResult) == result
