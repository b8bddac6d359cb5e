"""Load the configuration: embedded default, then a user file, then the environment.

A user file changes what it names, nothing else: its tables merge key by key
over the default (``[bus] hwm = 5`` keeps every other ``[bus]`` key), and so
do its ``[actors.NAME]`` tables over the default actor of that name (settings
included; ``enabled = false`` switches a default actor off); an actor with a
new name joins the pipeline. ``replace_default_actors = true`` at the top of
the user file is the explicit switch to run only the file's actors.

``SENSORIUM__SECTION__KEY=value`` overrides ``[section] key``; deeper tables
add more ``__`` parts (``SENSORIUM__ACTORS__MONITOR__RESTART=transient``).
Values are read as TOML values when they parse as one (numbers, booleans,
arrays, quoted strings) and as plain strings otherwise. Every problem is
reported in one ``ConfigError``, one line per problem, naming the key, the
value, what was expected and where the value came from (the file's path, or
the environment variable); whole tables are never printed.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tomllib
from collections import deque
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from pydantic import BaseModel, ValidationError

from config.schema import ActorSpec, Config

DEFAULT_PATH = Path(__file__).with_name("default.toml")
ENV_PREFIX = "SENSORIUM__"
REPLACE_KEY = "replace_default_actors"
"""Top-level key of a user file: true runs only the file's actors (see the module doc)."""
DEFAULT_SOURCE = "default"
SHOWN_CHARS = 60
"""A value in an error line is cut to this many characters: the line names the key, it does not dump data."""

Sources = dict[tuple[str, ...], str]
"""Key path -> where the value came from (a file's path or ``environment VAR``); absent: the default."""


class ConfigError(ValueError):
    """The configuration cannot be used; ``problems`` holds one line per key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        n = len(problems)
        super().__init__(f"configuration error ({n} problem{'s' if n != 1 else ''}):\n  " + "\n  ".join(problems))


class KindCatalog(Protocol):
    """What the loader needs to know of the actor kinds (``actors.registry.Registry`` is one)."""

    def settings_model(self, kind: str) -> type[BaseModel] | None:
        """The model of a kind's ``settings`` table; None for an unknown kind."""

    def kind_names(self) -> list[str]:
        """Every known kind, for the error message of an unknown one."""


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read config file {path}: {exc.strerror}"]) from exc
    try:
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError([f"{path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}"]) from exc


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, ...], tuple[str, Any]]:
    """Key path -> (variable name, value) for every SENSORIUM__ variable."""
    found = {}
    for var, raw in environ.items():
        if var.startswith(ENV_PREFIX) and len(var) > len(ENV_PREFIX):
            path = tuple(p.lower() for p in var[len(ENV_PREFIX):].split("__"))
            found[path] = (var, _parse_env_value(raw))
    return found


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: tables key by key, any other value replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def dotted(path: tuple[Any, ...]) -> str:
    """A key path as TOML writes it: ``actors."probe@echo".restart``."""
    return ".".join(p if re.fullmatch(r"[A-Za-z0-9_-]+", p) else json.dumps(p) for p in map(str, path)) or "(top level)"


def _set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> str | None:
    """Set ``data[path]``; the problem when a part of the path is a value, not a table."""
    node = data
    for n, key in enumerate(path[:-1]):
        nxt = node.get(key)
        if nxt is None:
            nxt = node[key] = {}
        elif not isinstance(nxt, dict):
            return f"{dotted(path[:n + 1])} is a value, not a table: {dotted(path)} cannot be set"
        node = nxt
    node[path[-1]] = value
    return None


def _mark(sources: Sources, data: Mapping[str, Any], where: str, prefix: tuple[str, ...] = ()) -> None:
    """Record ``where`` as the source of every value (and empty table) in ``data``."""
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            _mark(sources, value, where, prefix + (key,))
        else:
            sources[prefix + (key,)] = where


def _source(loc: tuple[str, ...], sources: Sources) -> str:
    """Where the value at ``loc`` came from: the nearest recorded key at or above it, else the sources of what
    was set below it (a table a file added), else the default."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in sources:
            return sources[loc[:n]]
    below = sorted({src for path, src in sources.items() if path[:len(loc)] == loc})
    return " and ".join(below) if below else DEFAULT_SOURCE


def _where(loc: tuple[str, ...], sources: Sources) -> str:
    src = _source(loc, sources)
    return "default.toml" if src == DEFAULT_SOURCE else src


def load(path: str | Path | None = None, environ: Mapping[str, str] | None = None,
         catalog: Callable[[Config], KindCatalog] | None = None) -> Config:
    """The resolved configuration; raises ConfigError listing every problem.

    ``catalog`` makes the kinds known (it gets the config, whose ``kinds`` table may add some): each
    actor's kind must exist and its ``settings`` table is validated, defaults filled in. Without it, only
    the generic keys are checked and ``settings`` stays as written. Where each value came from is kept
    (``Config.source_of``).
    """
    environ = os.environ if environ is None else environ
    data = _read_file(DEFAULT_PATH)
    sources: Sources = {}
    problems: list[str] = []
    overrides = env_overrides(environ)
    if path is not None:
        path = Path(path)
        user = _read_file(path)
        replace = overrides[(REPLACE_KEY,)][1] if (REPLACE_KEY,) in overrides else user.get(REPLACE_KEY)
        if replace is True:
            data["actors"] = {}
        data = deep_merge(data, user)
        _mark(sources, user, str(path))
    for key_path, (var, value) in overrides.items():
        problem = _set_path(data, key_path, value)
        if problem:
            problems.append(f"{var}: {problem}")
            continue
        sources[key_path] = f"environment {var}"
        if isinstance(value, Mapping):
            _mark(sources, value, f"environment {var}", key_path)
    if problems:
        raise ConfigError(problems)
    _apply_actor_defaults(data, sources)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(err, sources) for err in exc.errors()]) from None
    config._sources = sources
    _check_actors(config, sources, catalog(config) if catalog is not None else None)
    return config


def _apply_actor_defaults(data: dict[str, Any], sources: Sources) -> None:
    """Merge ``[actor_defaults]`` under every actor table, after checking it once as ActorSpec keys (so a bad
    value is reported once, at ``actor_defaults.KEY``, from where it was set)."""
    defaults = data.get("actor_defaults", {})
    actors = data.get("actors")
    if not isinstance(defaults, dict) or not isinstance(actors, dict):
        return  # the schema reports the wrong type
    try:
        ActorSpec.model_validate(defaults)
    except ValidationError as exc:
        raise ConfigError([_describe(err, sources, ("actor_defaults",), ActorSpec) for err in exc.errors()]) from None
    inherited = {path[1:]: src for path, src in sources.items() if path[:1] == ("actor_defaults",) and len(path) > 1}
    for name, table in actors.items():
        if not isinstance(table, dict):
            continue
        actors[name] = deep_merge(defaults, table)
        for key_path, src in inherited.items():
            node: Any = table
            for key in key_path:
                node = node.get(key) if isinstance(node, dict) else None
            if node is None:  # the actor's own table does not set it: the value is actor_defaults'
                sources.setdefault(("actors", name) + key_path, f"{src} (actor_defaults.{dotted(key_path)})")


def _allowed_keys(loc: tuple[Any, ...], model: Any = Config) -> list[str]:
    for part in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            if field is None:
                return []
            model = field.annotation
        elif getattr(model, "__origin__", None) is dict:
            model = model.__args__[1]
        else:
            return []
    if isinstance(model, type) and issubclass(model, BaseModel):
        return sorted(model.model_fields)
    return []


def _shown(value: Any) -> str:
    """A value as an error line shows it: JSON (TOML-like), cut short."""
    text = json.dumps(value, default=str) if isinstance(value, (bool, int, float, str, list)) else repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 3] + "..."


def _describe(err: Mapping[str, Any], sources: Sources, prefix: tuple[str, ...] = (),
              model_root: type[BaseModel] | None = None) -> str:
    """One line for one validation error: key, value, source, what was expected."""
    raw_loc = tuple(str(p) for p in err["loc"])
    msg = str(err["msg"]).replace("Input should be", "expected").replace("Value error, ", "")
    if raw_loc and raw_loc[-1] == "[key]":  # a table's key (an actor or kind name) is what is wrong
        loc = prefix + raw_loc[:-1]
        return f"{dotted(loc)}: bad name (from {_where(loc, sources)}): {msg}"
    loc = prefix + raw_loc
    where = _where(loc, sources)
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(raw_loc, model_root or Config)
        expected = f"one of: {', '.join(allowed)}" if allowed else "no such key"
        return f"{dotted(loc)}: unknown key (from {where}); expected {expected}"
    value = err.get("input")
    if isinstance(value, bool) and err["type"] in ("int_type", "float_type"):
        msg = f"{msg}, not a boolean"
    if isinstance(value, Mapping):  # a whole table is wrong (a check across its keys): name it, never print it
        return f"{dotted(loc)} (from {where}): {msg}"
    return f"{dotted(loc)} = {_shown(value)} (from {where}): {msg}"


def _check_actors(config: Config, sources: Sources, catalog: KindCatalog | None) -> None:
    problems: list[str] = []
    names = set(config.actors)
    for name, spec in config.actors.items():
        kind = spec.kind_for(name)
        model = catalog.settings_model(kind) if catalog is not None else None
        if catalog is not None and model is None:
            loc = ("actors", name, "kind")
            problems.append(f"{dotted(loc)} = {kind!r} (from {_where(loc, sources)}): "
                            f"expected one of {', '.join(sorted(catalog.kind_names()))}")
        elif model is not None:
            try:
                typed = model.model_validate(spec.settings)
            except ValidationError as exc:
                problems.extend(_describe(err, sources, ("actors", name, "settings"), model) for err in exc.errors())
            else:
                spec.settings = typed.model_dump()
                spec._typed_settings = typed
        for dep in spec.after:
            if dep not in names:
                loc = ("actors", name, "after")
                problems.append(f"{dotted(loc)} = {_shown(spec.after)} (from {_where(loc, sources)}): "
                                f"{dep!r} is not an actor; expected names from: {', '.join(sorted(names))}")
    if not problems:
        cycle = _find_cycle(config.actors)
        if cycle:
            problems.append(f"{dotted(('actors', cycle[0], 'after'))}: dependency cycle {' -> '.join(cycle)}; "
                            "expected no cycles")
    if problems:
        raise ConfigError(problems)


def _find_cycle(actors: Mapping[str, ActorSpec]) -> list[str]:
    order = start_order(actors, strict=False)
    if len(order) == len(actors):
        return []
    rest = [n for n in actors if n not in order]
    # Walk from a remaining node until a node repeats: that walk is a cycle.
    path = [rest[0]]
    while True:
        nxt = next(d for d in actors[path[-1]].after if d in rest)
        if nxt in path:
            return path[path.index(nxt):] + [nxt]
        path.append(nxt)


def start_order(actors: Mapping[str, ActorSpec], strict: bool = True) -> list[str]:
    """Names in dependency order (Kahn's algorithm, ties in declaration order)."""
    pending = {n: set(s.after) & set(actors) for n, s in actors.items()}
    ready = deque(n for n in actors if not pending[n])
    order: list[str] = []
    while ready:
        n = ready.popleft()
        order.append(n)
        for m in actors:
            if n in pending[m]:
                pending[m].discard(n)
                if not pending[m] and m not in order and m not in ready:
                    ready.append(m)
    if strict and len(order) != len(actors):
        raise ConfigError(["actors: dependency cycle"])
    return order
