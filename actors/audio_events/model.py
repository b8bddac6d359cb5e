"""The classifiers the audio_events actor runs on log-mel patches: the shipped head, or YAMNet.

Both take (k, 96, 64) float32 patches and give (k, classes) scores in 0..1:

* ``HeadClassifier`` - the project's own small CNN (``build_head``), trained by
  ``python -m actors.audio_events.train`` on generated sounds and shipped as
  ``models/events/head-v1.sealed``: the weights (``np.savez`` of the Keras
  weights, in layer order) sealed by ``config.storage`` with its sha256 and the
  metadata (classes, architecture, metrics) in the header. Softmax over
  alarm, clapping, laughter, speech, noise, silence.
* ``YamnetClassifier`` - YAMNet (``actors.audio_events.yamnet``) with the user's
  ``yamnet.h5`` and ``yamnet_class_map.csv``: 521 AudioSet classes, sigmoid.

The model runs as one ``tf.function`` traced once for (any batch, 96, 64)
float32 (``compiled_scores``): an eager Keras call costs ~45 ms of Python
and op dispatch per call even for one patch (the actor makes one call per
0.48 s patch), the traced graph ~3 ms; the fixed input signature means no
retracing, so no graph accumulates however many calls. Never
``Model.predict``, which builds a tf.data pipeline per call.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

import numpy as np

from actors.audio_events.features import MEL_BANDS, PATCH_FRAMES
from actors.audio_events.tfruntime import import_tensorflow, keras
from config.paths import resolve_path
from config.storage import CorruptFileError, unseal

HEAD_FORMAT = "sensorium-events-head/1"
HEAD_ARCH = "cnn16-32-48-64/1"
DEFAULT_HEAD = "models/events/head-v1.sealed"


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the path and why."""


def build_head(num_classes: int) -> Any:
    """A compact CNN over one 96x64 log-mel patch: 4 conv blocks (16, 32, 48, 64), global pooling, softmax."""
    k = keras()
    layers = k.layers
    patches = layers.Input(shape=(PATCH_FRAMES, MEL_BANDS), name="patches")
    x = layers.Reshape((PATCH_FRAMES, MEL_BANDS, 1), name="reshape")(patches)
    # Log-mel values sit around -7..+3; a batch norm on the input learns the offset and scale.
    x = layers.BatchNormalization(name="input_norm")(x)
    for i, filters in enumerate((16, 32, 48, 64), start=1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"conv{i}_bn")(x)
        x = layers.ReLU(name=f"conv{i}_relu")(x)
        if i < 4:
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Concatenate(name="pooled")([layers.GlobalAveragePooling2D(name="avg")(x),
                                           layers.GlobalMaxPooling2D(name="max")(x)])
    x = layers.Dropout(0.3, name="dropout")(x)
    x = layers.Dense(64, activation="relu", name="fc")(x)
    scores = layers.Dense(num_classes, activation="softmax", name="scores")(x)
    return k.Model(inputs=patches, outputs=scores, name="events_head")


def head_payload(model: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, *[np.asarray(w) for w in model.get_weights()])
    return buf.getvalue()


class HeadClassifier:
    """The shipped (or a retrained) head from a sealed file; CorruptFileError/ModelFileError name the path."""

    activation = "softmax"

    def __init__(self, path: str | Path = DEFAULT_HEAD) -> None:
        self.path = resolve_path(path)
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise ModelFileError(f"{self.path}: cannot read the events head ({exc})") from None
        payload, header = unseal(raw, self.path)  # CorruptFileError on a sha256 mismatch
        if header.get("format") != HEAD_FORMAT or header.get("arch") != HEAD_ARCH or not header.get("classes"):
            raise ModelFileError(f"{self.path}: format {header.get('format')!r} arch {header.get('arch')!r} "
                                 f"classes {header.get('classes')!r}: expected {HEAD_FORMAT!r} {HEAD_ARCH!r} "
                                 "with a class list")
        self.labels: list[str] = list(header["classes"])
        self.meta = header
        self.model = build_head(len(self.labels))
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
                weights = [npz[f"arr_{i}"] for i in range(len(npz.files))]
            self.model.set_weights(weights)
        except (ValueError, OSError, KeyError) as exc:
            raise ModelFileError(f"{self.path}: weights do not fit {HEAD_ARCH}: {exc}") from None
        self.sha256 = header["sha256"]
        self._scores = compiled_scores(self.model)

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        return self._scores(patches)


class YamnetClassifier:
    """YAMNet with the user's weights and class map (``actors.audio_events.yamnet.load_yamnet``)."""

    activation = "sigmoid"

    def __init__(self, weights_path: str | Path, class_map_path: str | Path) -> None:
        from actors.audio_events.yamnet import load_yamnet  # noqa: PLC0415 - only when configured

        self.path = resolve_path(weights_path)
        self.model, self.labels = load_yamnet(self.path, resolve_path(class_map_path))
        self.meta = {"format": "yamnet.h5"}
        self.sha256 = ""
        self._scores = compiled_scores(self.model)

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        return self._scores(patches)


def compiled_scores(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``patches (k, 96, 64) -> scores (k, classes)`` through one traced graph (YAMNet's embeddings dropped)."""
    tf = import_tensorflow()
    classes = int(model.outputs[0].shape[-1])

    @tf.function(input_signature=[tf.TensorSpec([None, PATCH_FRAMES, MEL_BANDS], tf.float32)])
    def scores(x: Any) -> Any:
        out = model(x, training=False)
        return out[0] if isinstance(out, (list, tuple)) else out

    def call(patches: np.ndarray) -> np.ndarray:
        if patches.shape[0] == 0:
            return np.zeros((0, classes), np.float32)
        return scores(np.ascontiguousarray(patches, np.float32)).numpy()

    return call


def load_classifier(kind: str, head_path: str = DEFAULT_HEAD, yamnet_weights: str = "", yamnet_class_map: str = "",
                    intra_op_threads: int = 1, inter_op_threads: int = 1) -> HeadClassifier | YamnetClassifier:
    """The configured classifier; TensorFlow is imported here (once per process) with the thread counts."""
    import_tensorflow(intra_op_threads, inter_op_threads)
    if kind == "yamnet":
        return YamnetClassifier(yamnet_weights, yamnet_class_map)
    return HeadClassifier(head_path)


__all__ = ["CorruptFileError", "HeadClassifier", "ModelFileError", "YamnetClassifier", "build_head",
           "load_classifier"]
