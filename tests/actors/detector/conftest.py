"""Fixtures of the vision tests: the shipped model store (and private copies of
it), the shipped models loaded once per session, and a feeder that publishes
camera frames and waits for the detector's answer."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import zmq

from actors.lib.modelstore import DEFAULT_STORE, ModelStore
from bus.bodies.vision import CameraFrame
from bus.direct import folder_for
from bus.pubsub import Publisher
from tests.support import WAIT_S, Collector

SIGNALS = ("circle", "square", "triangle")


@pytest.fixture(scope="session")
def shipped_store() -> ModelStore:
    store = ModelStore(DEFAULT_STORE, read_only=True)  # reading the shipped store writes nothing into the checkout
    if not store.registry.exists():
        pytest.fail(f"{DEFAULT_STORE}: no shipped models; run python -m actors.detector.make_weights")
    return store


@pytest.fixture
def store_copy(tmp_path: Path, shipped_store: ModelStore) -> ModelStore:
    """A private copy of the shipped store that a test may change."""
    root = tmp_path / "models"
    shutil.copytree(shipped_store.root, root, ignore=shutil.ignore_patterns(".backups", ".quarantine", "*.lock",
                                                                            "README.md"))
    return ModelStore(root)


@pytest.fixture
def user_store(tmp_path: Path) -> ModelStore:
    """A user store of the test's own, layered over the shipped models/ (what the detector and the CLI open)."""
    return ModelStore.layered(DEFAULT_STORE, tmp_path / "user")


@pytest.fixture(scope="session")
def shipped_models(shipped_store: ModelStore):
    """The shipped backbone and heads as torch modules, loaded once per test run."""
    from actors.detector import model as hm

    doc = shipped_store.read()
    backbone = hm.backbone_from_bytes(shipped_store.read_verified("backbone", shipped_store.active("backbone", doc)))
    heads = {s: hm.head_from_bytes(shipped_store.read_verified(s, shipped_store.active(s, doc), doc)) for s in SIGNALS}
    return backbone, heads


def detector_toml(models_dir: Path | str, heads: list[str] | None = None, user_dir: Path | str | None = None) -> str:
    """A detector reading ``models_dir`` (shipped) under ``user_dir`` (default: the test's $XDG_DATA_HOME)."""
    heads_toml = "" if heads is None else f", heads = {list(heads)!r}".replace("'", '"')
    user_toml = "" if user_dir is None else f', user_dir = "{user_dir}"'
    return f"""
[actors.detector]
start_timeout_s = 120.0
liveness_timeout_s = 30.0
settings = {{ models_dir = "{models_dir}", threads = 1{heads_toml}{user_toml} }}
"""


class FrameFeeder:
    """Publishes camera.frame like a camera would, as ``test@camera``: listening for direct links, since the
    detector reads frames through a pipe straight from this host's publishers."""

    def __init__(self, frontend: str) -> None:
        self.pub = Publisher(zmq.Context.instance(), frontend, "test@camera", direct_dir=folder_for(frontend))
        if not self.pub.wait_for_subscriber(CameraFrame.TOPIC, WAIT_S):
            raise AssertionError("nobody subscribed to camera.frame (is the detector up?)")

    def send(self, image: np.ndarray, frame_id: int) -> None:
        self.pub.publish(CameraFrame.TOPIC, CameraFrame(image=image, frame_id=frame_id, fps=5.0).to_body())

    def send_body(self, body: dict) -> None:
        self.pub.publish(CameraFrame.TOPIC, body)

    def close(self) -> None:
        self.pub.close()


@pytest.fixture
def feeder_factory() -> Iterator:
    made: list[FrameFeeder] = []

    def make(where) -> FrameFeeder:
        f = FrameFeeder(where.frontend)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def detections_for(collector: Collector, signal: str, frame_id: int, timeout_s: float = WAIT_S):
    return collector.wait_for(lambda m: m.topic == f"detect.{signal}" and m.body["frame_id"] == frame_id,
                              timeout_s=timeout_s, what=f"detect.{signal} of frame {frame_id}")
