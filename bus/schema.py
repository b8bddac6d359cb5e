"""JSON Schemas of the topics, generated from the typed body classes (one source of truth).

Every topic's body is a dataclass built on ``bus.messages.Body`` (in
``bus/messages.py`` and ``bus/bodies/``); ``json_schema(cls)`` turns its
fields, type hints, defaults and field docstrings (units included) into a
JSON Schema, draft 2020-12. Each kind's spec names the bodies it publishes
(``KindSpec.publishes``); ``sensorium topic schema TOPIC`` prints one.

What the schema validates: the body map as decoded from msgpack, in which
each array record has been replaced by the map ``{"dtype": DTYPE, "shape":
[...]}`` (``jsonable()`` does that). An array field's schema is that map,
plus the keyword ``x-ndarray`` ``{"dtype": NAME, "shape": [...]}``, which
says what the array holds: the numpy dtype name, and per dimension either a
size or the name of a free size (``"N"``). A field that allows several
shapes is an ``anyOf`` of one such schema per shape. ``dtype`` accepts the
wire form (``<f4``, ``|u1``: ``docs/wire.md``) and the numpy name
(``float32``: what ``sensorium tap`` prints). Bodies may gain fields
(additive changes), so the schemas allow unknown keys.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil
import textwrap
import types
import typing
from typing import Any, Iterable

import numpy as np

import bus.bodies
from bus.messages import ArraySpec, Body, Command

DRAFT = "https://json-schema.org/draft/2020-12/schema"
ARRAY_KEYWORD = "x-ndarray"

_PREFIX_TOPICS: dict[type[Body], str] = {Command: "ctl."}
"""Bodies whose topic is an area rather than one topic (``TOPIC`` ends in '.' for the others)."""


def _bus_bodies() -> tuple[type[Body], ...]:
    """Every body class with a topic defined in ``bus.messages`` or a module of ``bus/bodies/``, found by
    walking ``Body``'s subclasses: a new body is listed by being written, with no list to keep in step."""
    for info in pkgutil.iter_modules(bus.bodies.__path__):
        importlib.import_module(f"{bus.bodies.__name__}.{info.name}")
    found, stack = [], list(Body.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith(("bus.messages", "bus.bodies.")) and (cls.TOPIC or cls in _PREFIX_TOPICS):
            found.append(cls)
    return tuple(sorted(found, key=lambda c: (c.__module__, c.__name__)))


BODIES: tuple[type[Body], ...] = _bus_bodies()
"""Every typed body of the bus; a test checks that each kind's published bodies are among them."""


class SchemaError(TypeError):
    """A body class whose fields cannot be described (an array without ArraySpec, an unknown type)."""


def topic_of(cls: type[Body]) -> str:
    """The topic of a body class, or its area ending in '.' (``detect.``, ``ctl.``)."""
    return _PREFIX_TOPICS.get(cls, cls.TOPIC)


def body_for_topic(topic: str, bodies: Iterable[type[Body]] = BODIES) -> type[Body] | None:
    """The body class of ``topic``: an exact topic first, else the longest area that holds it."""
    best: tuple[int, type[Body]] | None = None
    for cls in bodies:
        t = topic_of(cls)
        if t == topic:
            return cls
        if t.endswith(".") and topic.startswith(t) and (best is None or len(t) > best[0]):
            best = (len(t), cls)
    return best[1] if best else None


def json_schema(cls: type[Body]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a body class."""
    if not dataclasses.is_dataclass(cls):
        raise SchemaError(f"{cls.__name__} is not a dataclass")
    hints = typing.get_type_hints(cls, include_extras=True)
    docs = field_docs(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        try:
            prop = _type_schema(hints[f.name])
        except SchemaError as exc:
            raise SchemaError(f"{cls.__name__}.{f.name}: {exc}") from None
        if f.name in docs:
            prop = {"description": docs[f.name], **prop}
        if f.default is not dataclasses.MISSING:
            prop["default"] = _jsonable_default(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            prop["default"] = _jsonable_default(f.default_factory())
        else:
            required.append(f.name)
        properties[f.name] = prop
    schema: dict[str, Any] = {"$schema": DRAFT, "title": cls.__name__}
    topic = topic_of(cls)
    if topic:
        schema["x-topic"] = topic
    description = inspect.cleandoc(cls.__doc__) if cls.__doc__ and not cls.__doc__.startswith(
        f"{cls.__name__}(") else ""  # dataclasses make up a docstring from the signature: not a description
    if description:
        schema["description"] = description
    schema.update(type="object", properties=properties, required=required, additionalProperties=True)
    return schema


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a class and its bases (read from the source)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        node = ast.parse(source).body[0]
        if not isinstance(node, ast.ClassDef):
            continue
        items = node.body
        for stmt, nxt in zip(items, items[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def _array_schema(spec: ArraySpec) -> dict[str, Any]:
    dtype = np.dtype(spec.dtype)
    wire = [dtype.str] if dtype.itemsize == 1 else [dtype.newbyteorder("<").str, dtype.newbyteorder(">").str]
    options = []
    for shape in spec.shapes:
        dims = [{"const": d} if isinstance(d, int) else {"type": "integer", "minimum": 0, "description": d}
                for d in shape]
        options.append({
            "type": "object",
            ARRAY_KEYWORD: {"dtype": dtype.name, "shape": list(shape)},
            "properties": {
                "dtype": {"enum": [*wire, dtype.name]},
                "shape": {"type": "array", "prefixItems": dims, "items": False, "minItems": len(shape)},
            },
            "required": ["dtype", "shape"],
        })
    return options[0] if len(options) == 1 else {"anyOf": options}


_SCALARS: dict[Any, dict[str, Any]] = {
    int: {"type": "integer"}, float: {"type": "number"}, str: {"type": "string"}, bool: {"type": "boolean"},
    type(None): {"type": "null"}, Any: {},
}


def _type_schema(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        spec = next((a for a in args[1:] if isinstance(a, ArraySpec)), None)
        if spec is not None:
            return _array_schema(spec)
        return _type_schema(args[0])
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    if hint is np.ndarray:
        raise SchemaError("an array field needs Annotated[np.ndarray, ArraySpec(dtype, shape)]")
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type_schema(a) for a in args]}
    if origin is dict or hint is dict:
        value = _type_schema(args[1]) if args else {}
        return {"type": "object", "additionalProperties": value} if value else {"type": "object"}
    if origin in (list, tuple) or hint in (list, tuple):
        item = _type_schema(args[0]) if args else {}
        return {"type": "array", "items": item} if item else {"type": "array"}
    raise SchemaError(f"no JSON Schema for the type {hint!r}")


def _jsonable_default(value: Any) -> Any:
    return jsonable(value)


def jsonable(value: Any) -> Any:
    """A decoded body as the schema sees it: arrays as ``{"dtype": WIRE DTYPE, "shape": [...]}``,
    numpy scalars as Python numbers, tuples as lists."""
    if isinstance(value, np.ndarray):
        return {"dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def catalogue(bodies: Iterable[type[Body]] = BODIES) -> dict[str, dict[str, Any]]:
    """Topic (or area ending in '.') -> its schema, for every body."""
    return {topic_of(cls): json_schema(cls) for cls in bodies}
