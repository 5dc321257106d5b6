"""Typed method parameters: each method declares one dataclass whose fields hold every parameter's
default and help text (defaults live there and nowhere else).

A run gives `method.params` as a mapping (YAML, dotted overrides); `MethodParams.from_mapping` merges
it into the defaults (a nested dataclass such as ULD's `lora` is merged key by key, so `lora.r=8` keeps
alpha and dropout) and the dataclass validates itself in `__post_init__`, raising UnlearnError.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from unlearnkit.errors import UnlearnError


def param(default: Any, help: str, *, path: bool = False) -> Any:
    """A parameter field with its default and help; `path=True` marks a file the run reads (the output
    directory may not lie inside it). Mutable defaults (and dataclass types) are built per instance."""
    metadata = {"help": help, "path": path}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    if isinstance(default, type) and dataclasses.is_dataclass(default):
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


def _nested(cls: type, name: str) -> type | None:
    """The dataclass type of field `name` of `cls`, if it is one (such a field merges key by key)."""
    tp = typing.get_type_hints(cls).get(name)
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def param_keys(cls: type, prefix: str = "") -> list[str]:
    """Every settable key of a parameter dataclass, nested ones dotted (lora.r)."""
    keys = []
    for f in dataclasses.fields(cls):
        nested = _nested(cls, f.name)
        keys += param_keys(nested, f"{prefix}{f.name}.") if nested else [prefix + f.name]
    return keys


def param_table(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, help) of every parameter, nested ones expanded: what `unlearn methods`
    shows, read from the dataclass itself so the help can never disagree with the defaults."""
    rows = []
    instance = cls()
    for f in dataclasses.fields(cls):
        nested = _nested(cls, f.name)
        if nested:
            rows += param_table(nested, f"{prefix}{f.name}.")
        else:
            rows.append((prefix + f.name, getattr(instance, f.name), f.metadata.get("help", "")))
    return rows


def unknown_keys(cls: type, values: dict, prefix: str = "") -> list[str]:
    """Keys of `values` (nested mappings included) that are not parameters of `cls`."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = []
    for key, value in values.items():
        nested = _nested(cls, key) if key in names else None
        if key not in names:
            unknown.append(f"{prefix}{key}")
        elif nested and isinstance(value, dict):
            unknown += unknown_keys(nested, value, f"{prefix}{key}.")
    return unknown


_KINDS = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}


def _fits(value: Any, tp: Any) -> bool:
    """Whether a YAML value fits a field annotation (float takes ints; bool is no number)."""
    if tp is Any:
        return True
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp) or (Any,)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp) or (Any,)
        return f"a list of {_describe(item).removeprefix('a ').removeprefix('an ')}s"
    return _KINDS.get(tp, getattr(tp, "__name__", str(tp)))


def check_types(params, prefix: str = "") -> None:
    """Every field's value fits its annotation (nested dataclasses checked too); an UnlearnError names
    the first that does not."""
    hints = typing.get_type_hints(type(params))
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if dataclasses.is_dataclass(value):
            check_types(value, f"{prefix}{f.name}.")
        elif not _fits(value, hints[f.name]):
            raise UnlearnError(f"{prefix}{f.name}={value!r} must be {_describe(hints[f.name])}")


def _build(cls: type, values: dict, prefix: str = ""):
    kwargs = {}
    for key, value in values.items():
        nested = _nested(cls, key)
        if nested is not None:
            if value is None:
                continue  # null: the nested defaults
            if not isinstance(value, dict):
                raise UnlearnError(f"{prefix}{key}={value!r} must be a mapping of "
                                   f"{', '.join(param_keys(nested))}")
            value = _build(nested, value, f"{prefix}{key}.")
        kwargs[key] = value
    return cls(**kwargs)


@dataclass
class MethodParams:
    """Base of every method's parameter dataclass (no parameters of its own).

    Subclasses declare fields with `param(default, help)` and check values in `__post_init__`
    (calling super's first).
    """

    def __post_init__(self) -> None:
        """Validate the values (raise UnlearnError); the base has nothing to check."""

    @classmethod
    def from_mapping(cls, values: dict | None):
        """The defaults with `values` merged in (nested dataclasses key by key), validated: the
        dataclass's own checks, then every value against its annotation. Unknown keys are the caller's
        to report (see methods.registry.Method.resolve_params)."""
        params = _build(cls, dict(values or {}))
        check_types(params)
        return params

    def to_dict(self) -> dict:
        """Plain values (nested dataclasses as dicts): what run.json and unlearn.json record."""
        return dataclasses.asdict(self)

    @classmethod
    def path_keys(cls) -> list[str]:
        """Parameters naming files the run reads (declared with `param(..., path=True)`)."""
        return [f.name for f in dataclasses.fields(cls) if f.metadata.get("path")]
