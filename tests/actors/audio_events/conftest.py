"""Audio-events fixtures: TensorFlow and the shipped head loaded once per run, the held-out mix."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tf():
    """TensorFlow, imported once for the whole run with 2 intra-op threads."""
    from actors.audio_events.tfruntime import import_tensorflow

    return import_tensorflow(2, 1)


@pytest.fixture(scope="session")
def head(tf):
    """The shipped head (models/events/head-v1.sealed), loaded once for the whole run."""
    from actors.audio_events.model import load_classifier

    return load_classifier("head", intra_op_threads=2)


@pytest.fixture(scope="session")
def heldout() -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """The held-out mix: 5 each of alarm, clapping, laughter (numpy, seed 7000) and the demo's espeak sentences."""
    from actors.audio_events.train import heldout_mix

    return heldout_mix()


@pytest.fixture(scope="session")
def yamnet_files(tf, tmp_path_factory):
    """A yamnet.h5 of random weights written from the architecture itself, and a 521-line class map."""
    folder = tmp_path_factory.mktemp("yamnet")
    from actors.audio_events.yamnet import NUM_CLASSES, build_yamnet, save_yamnet_h5

    model = build_yamnet()
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0, 0.05, w.shape).astype(np.float32) if "variance" not in v.path
                       else rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                       for v, w in zip(model.weights, model.get_weights())])
    weights = save_yamnet_h5(model, folder / "yamnet.h5")
    class_map = folder / "yamnet_class_map.csv"
    class_map.write_text("index,mid,display_name\n" + "".join(f"{i},/m/{i:05d},Class {i}\n"
                                                              for i in range(NUM_CLASSES)))
    return model, weights, class_map
