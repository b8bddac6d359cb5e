"""The model registry as the console shows it: the layered store of ``actors/lib/modelstore.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.lib.model_migration import open_layered
from actors.lib.modelstore import DEFAULT_STORE, ModelStore, sort_versions, user_models_dir
from actors.console.settings import ConsoleSettings


def open_store(settings: ConsoleSettings) -> ModelStore:
    """The user store over the shipped one, as the detector and ``sensorium models`` open it."""
    return open_layered(Path(settings.models_dir) if settings.models_dir else DEFAULT_STORE,
                        user_models_dir(settings.user_dir), say=lambda _line: None)


def version_view(version: str, meta: dict[str, Any], active: str | None) -> dict[str, Any]:
    metrics = meta.get("metrics") or {}
    f1 = metrics.get("f1", metrics.get("mean_f1"))
    return {"version": version, "store": meta.get("store", ""), "active": version == active,
            "created": meta.get("created"), "f1": f1, "precision": metrics.get("precision"),
            "recall": metrics.get("recall"), "curve": metrics.get("curve"), "backbone": meta.get("backbone"),
            "parent": meta.get("parent"), "decision": meta.get("decision"), "notes": meta.get("notes", ""),
            "rolled_back": meta.get("rolled_back")}


def model_view(store: ModelStore, name: str, doc: dict[str, Any]) -> dict[str, Any]:
    entry = store.entry(name, doc)
    active = entry.get("active")
    return {"name": name, "active": active, "history": entry.get("history", []),
            "versions": [version_view(v, entry["versions"][v], active) for v in sort_versions(entry["versions"])]}


def list_models(store: ModelStore) -> dict[str, Any]:
    doc = store.read()
    return {"store": store.describe(), "models": [model_view(store, n, doc) for n in store.names(doc)]}
