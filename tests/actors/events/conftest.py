"""Audio-events fixtures: TensorFlow and the shipped head loaded once per run, the held-out mix."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tf():
    """TensorFlow, imported once for the whole run with 2 intra-op threads."""
    from actors.events.tfruntime import import_tensorflow

    return import_tensorflow(2, 1)


@pytest.fixture(scope="session")
def head(tf):
    """The shipped head (models/events/head-v1.sealed), loaded once for the whole run."""
    from actors.events.model import load_classifier

    return load_classifier("head", intra_op_threads=2)


@pytest.fixture(scope="session")
def heldout() -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """The held-out mix: 5 each of alarm, clapping, laughter (numpy, seed 7000) and the demo's espeak sentences."""
    from actors.events.train import heldout_mix

    return heldout_mix()
