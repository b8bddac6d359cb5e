"""The detector kind: the Hydra detector (one shared backbone, one head per signal) on camera frames.

Its model store lives in the shared library (``actors/lib/modelstore.py``);
the model, training and the ``sensorium models`` command live here.
"""

from __future__ import annotations

from pathlib import Path

from actors.detector.settings import DetectorSettings
from actors.lib.modelstore import DEFAULT_STORE, ModelStore
from actors.spec import Check, Extra, KindSpec
from bus.bodies.vision import Detections
from bus.cli import CliCommand
from bus.messages import Alert


def check_model_store(name: str, settings: DetectorSettings) -> list[Check]:
    """The store this detector reads (``models_dir``): every weight file against its sha256 (no torch)."""
    store = ModelStore(Path(settings.models_dir) if settings.models_dir else DEFAULT_STORE)
    if not store.registry.exists():
        return [Check(f"{name} models", "fail", f"no model registry at {store.registry}")]
    problems = store.verify()
    if problems:
        return [Check(f"{name} models", "fail", "; ".join(str(p) for p in problems))]
    return [Check(f"{name} models", "ok", f"{store.root}: {store.count_files()} file(s), checksums good")]


SPEC = KindSpec(
    name="detector",
    description="Hydra detector: one backbone per frame, one small head per signal, on detect.<signal>",
    actor="actors.detector.actor:DetectorActor",
    settings=DetectorSettings,
    publishes=(Detections, Alert),
    preflight=(check_model_store,),
    commands=(CliCommand("models", "model store: list, history, promote, rollback, cleanup, verify, extract, train",
                         "actors.detector.cli:main"),),
    extras=(Extra("vision", ("torch", "cv2")),),
)
