"""The detector kind: the Hydra detector (one shared backbone, one head per signal) on camera frames.

Its model store lives in the shared library (``actors/lib/modelstore.py``);
the model, training and the ``sensorium models`` command live here.
"""

from __future__ import annotations

from pathlib import Path

from actors.detector.settings import DetectorSettings
from actors.lib.model_migration import needs_migration
from actors.lib.modelstore import DEFAULT_STORE, ModelStore, user_models_dir
from actors.spec import Check, Extra, KindSpec
from bus.bodies.vision import Detections
from bus.cli import CliCommand
from bus.messages import Alert, ModelSwitch


def check_model_store(name: str, settings: DetectorSettings) -> list[Check]:
    """The stores this detector reads (the user's ``user_dir`` over the shipped ``models_dir``): every
    weight file against its sha256 (no torch). Writes nothing: moving models an earlier release left in
    the checkout is the detector's (or ``sensorium models``') first start's job; this check says it is due."""
    store = ModelStore.layered(Path(settings.models_dir) if settings.models_dir else DEFAULT_STORE,
                               user_models_dir(settings.user_dir))
    assert store.base is not None
    if not store.base.registry.exists():
        return [Check(f"{name} models", "fail", f"no model registry at {store.base.registry}")]
    problems = store.verify()
    if problems:
        return [Check(f"{name} models", "fail", "; ".join(str(p) for p in problems))]
    checks = [Check(f"{name} models", "ok", f"{store.describe()}: {store.count_files()} file(s), checksums good")]
    if needs_migration(store.base.root):
        checks.append(Check(f"{name} models", "warn", f"{store.base.registry} holds models an earlier release "
                            "trained into the checkout; the detector's next start moves them to the user store"))
    return checks


SPEC = KindSpec(
    name="detector",
    description="Hydra detector: one backbone per frame, one small head per signal, on detect.<signal>",
    actor="actors.detector.actor:DetectorActor",
    settings=DetectorSettings,
    publishes=(Detections, ModelSwitch, Alert),
    preflight=(check_model_store,),
    commands=(CliCommand("models", "model store: list, history, promote, rollback, cleanup, verify, extract, train",
                         "actors.detector.cli:main"),),
    extras=(Extra("vision", ("torch", "cv2")),),
)
