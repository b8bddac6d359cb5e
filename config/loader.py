"""Load the configuration: embedded default, then a user file, then the environment.

``SENSORIUM__SECTION__KEY=value`` overrides ``[section] key``; deeper tables
add more ``__`` parts (``SENSORIUM__ACTORS__MONITOR__RESTART=transient``).
Values are read as TOML values when they parse as one (numbers, booleans,
arrays, quoted strings) and as plain strings otherwise. Every problem is
reported in one ``ConfigError`` whose lines name the key, the value, what was
expected and where the value came from.
"""

from __future__ import annotations

import copy
import json
import os
import tomllib
from collections import deque
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from pydantic import BaseModel, ValidationError

from config.schema import ActorSpec, Config

DEFAULT_PATH = Path(__file__).with_name("default.toml")
ENV_PREFIX = "SENSORIUM__"


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
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for key in path[:-1]:
        nxt = node.get(key)
        if not isinstance(nxt, dict):
            nxt = node[key] = {}
        node = nxt
    node[path[-1]] = value


def load(path: str | Path | None = None, environ: Mapping[str, str] | None = None,
         catalog: Callable[[Config], KindCatalog] | None = None) -> Config:
    """The resolved configuration; raises ConfigError listing every problem.

    ``catalog`` makes the kinds known (it gets the config, whose ``kinds`` table may add some): each
    actor's kind must exist and its ``settings`` table is validated, defaults filled in. Without it, only
    the generic keys are checked and ``settings`` stays as written.
    """
    environ = os.environ if environ is None else environ
    data = _read_file(DEFAULT_PATH)
    sources: dict[tuple[str, ...], str] = {}
    user: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        user = _read_file(path)
        if "actors" in user:
            # A user file that lists actors describes the whole pipeline: the
            # default pipeline's actors do not join it.
            data["actors"] = {}
        data = deep_merge(data, user)
        for key_path in _leaf_paths(user):
            sources[key_path] = str(path)
    for key_path, (var, value) in env_overrides(environ).items():
        _set_path(data, key_path, value)
        sources[key_path] = f"environment {var}"
    defaults = data.get("actor_defaults", {})
    if isinstance(defaults, dict) and isinstance(data.get("actors"), dict):
        data["actors"] = {name: deep_merge(defaults, table) if isinstance(table, dict) else table
                          for name, table in data["actors"].items()}
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(err, data, sources) for err in exc.errors()]) from None
    _check_actors(config, data, sources, catalog(config) if catalog is not None else None)
    return config


def _leaf_paths(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out.extend(_leaf_paths(value, prefix + (key,)))
        else:
            out.append(prefix + (key,))
    return out


def _source(loc: tuple[str, ...], sources: dict[tuple[str, ...], str]) -> str:
    for n in range(len(loc), 0, -1):
        if loc[:n] in sources:
            return sources[loc[:n]]
    return "default.toml"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Config
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


def _describe(err: Mapping[str, Any], data: Any, sources: dict[tuple[str, ...], str],
              prefix: tuple[str, ...] = (), model_root: type[BaseModel] | None = None) -> str:
    loc = prefix + tuple(str(p) for p in err["loc"])
    key = ".".join(loc) or "(top level)"
    where = _source(loc, sources)
    if err["type"] == "extra_forbidden":
        allowed = sorted(model_root.model_fields) if model_root is not None else _allowed_keys(tuple(err["loc"]))
        expected = f"one of: {', '.join(allowed)}" if allowed else "no such key"
        return f"{key}: unknown key (from {where}); expected {expected}"
    msg = str(err["msg"])
    msg = msg.replace("Input should be", "expected").replace("Value error, ", "")
    return f"{key} = {err.get('input')!r} (from {where}): {msg}"


def _check_actors(config: Config, data: dict[str, Any], sources: dict[tuple[str, ...], str],
                  catalog: KindCatalog | None) -> None:
    problems: list[str] = []
    names = set(config.actors)
    for name, spec in config.actors.items():
        kind = spec.kind_for(name)
        model = catalog.settings_model(kind) if catalog is not None else None
        if catalog is not None and model is None:
            loc = ("actors", name, "kind")
            problems.append(f"actors.{name}.kind = {kind!r} (from {_source(loc, sources)}): "
                            f"expected one of {', '.join(sorted(catalog.kind_names()))}")
        elif model is not None:
            try:
                spec.settings = model.model_validate(spec.settings).model_dump()
            except ValidationError as exc:
                problems.extend(_describe(err, data, sources, ("actors", name, "settings"), model)
                                for err in exc.errors())
        for dep in spec.after:
            if dep not in names:
                problems.append(f"actors.{name}.after = {spec.after!r} (from {_source(('actors', name, 'after'), sources)}): "
                                f"{dep!r} is not an actor; expected names from: {', '.join(sorted(names))}")
    if not problems:
        cycle = _find_cycle(config.actors)
        if cycle:
            problems.append(f"actors.{cycle[0]}.after: dependency cycle {' -> '.join(cycle)}; expected no cycles")
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
