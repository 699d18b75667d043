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
        if inspect.isclass(value) or inspect.isfunction(value):
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
