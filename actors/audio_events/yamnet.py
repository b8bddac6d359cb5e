"""YAMNet's architecture in Keras 3, and a loader for YAMNet's published weights file (``yamnet.h5``).

The network is ``research/audioset/yamnet/yamnet.py`` of tensorflow/models:
a MobileNet-v1 body over a 96x64 log-mel patch (one 3x3 conv, then 13
depthwise-separable blocks; batch norm with ``center=True, scale=False,
epsilon=1e-4``; 'same' padding; no biases), global average pooling to the
1024-d embedding, a dense layer to 521 logits and a sigmoid. The frontend
(``actors.audio_events.features``) is YAMNet's too.

Names: YAMNet's layers are ``layer1/conv``, ``layer1/conv/bn``,
``layerN/depthwise_conv``, ``layerN/depthwise_conv/bn``,
``layerN/pointwise_conv``, ``layerN/pointwise_conv/bn``, and the dense
layer. Keras 3 forbids ``/`` in layer names, so the Keras layers here use
``_`` (``layer2_depthwise_conv_bn``) and ``yamnet_name`` maps them back.

The weights file is Keras 2's HDF5 layout (what YAMNet's ``yamnet.h5`` is):
root attribute ``layer_names``, one group per layer with attribute
``weight_names``, one dataset per weight (under ``model_weights/`` when the
file holds a whole model). ``load_yamnet_weights`` reads it with h5py, layer
by layer in order, checking every name and shape before anything is assigned,
and names the file and the first layer that does not fit. Nothing is ever
downloaded: the user points ``weights_path`` and ``class_map_path`` at
files they have.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from actors.audio_events.features import MEL_BANDS, PATCH_FRAMES
from actors.audio_events.tfruntime import keras

NUM_CLASSES = 521
EMBEDDING_SIZE = 1024
BN_EPSILON = 1e-4
LAYER_DEFS: list[tuple[str, int, int]] = [
    # (kind, stride, filters); every kernel is 3x3 (pointwise 1x1)
    ("conv", 2, 32),
    ("separable", 1, 64),
    ("separable", 2, 128),
    ("separable", 1, 128),
    ("separable", 2, 256),
    ("separable", 1, 256),
    ("separable", 2, 512),
    ("separable", 1, 512),
    ("separable", 1, 512),
    ("separable", 1, 512),
    ("separable", 1, 512),
    ("separable", 1, 512),
    ("separable", 2, 1024),
    ("separable", 1, 1024),
]
"""YAMNet's ``_YAMNET_LAYER_DEFS``."""
LOGITS = "logits"


class YamnetWeightsError(ValueError):
    """A weights or class map file that does not fit YAMNet; the message names the path and the layer."""


def yamnet_name(keras_name: str) -> str:
    """``layer2_depthwise_conv_bn`` -> ``layer2/depthwise_conv/bn`` (YAMNet's name)."""
    if not keras_name.startswith("layer"):
        return keras_name
    head, _, rest = keras_name.partition("_")
    return head + "/" + rest.replace("conv_bn", "conv/bn")


def build_yamnet(num_classes: int = NUM_CLASSES) -> Any:
    """The Keras model: input (batch, 96, 64) log-mel patches; outputs [scores (sigmoid), embeddings (1024)]."""
    k = keras()
    layers = k.layers
    patches = layers.Input(shape=(PATCH_FRAMES, MEL_BANDS), name="patches")
    net = layers.Reshape((PATCH_FRAMES, MEL_BANDS, 1), name="reshape")(patches)

    def bn(name: str, x: Any) -> Any:
        return layers.BatchNormalization(name=name, center=True, scale=False, epsilon=BN_EPSILON)(x)

    for i, (kind, stride, filters) in enumerate(LAYER_DEFS, start=1):
        if kind == "conv":
            net = layers.Conv2D(filters, (3, 3), strides=stride, padding="same", use_bias=False,
                                name=f"layer{i}_conv")(net)
            net = layers.ReLU(name=f"layer{i}_relu")(bn(f"layer{i}_conv_bn", net))
        else:
            net = layers.DepthwiseConv2D((3, 3), strides=stride, depth_multiplier=1, padding="same", use_bias=False,
                                         name=f"layer{i}_depthwise_conv")(net)
            net = layers.ReLU(name=f"layer{i}_depthwise_conv_relu")(bn(f"layer{i}_depthwise_conv_bn", net))
            net = layers.Conv2D(filters, (1, 1), strides=1, padding="same", use_bias=False,
                                name=f"layer{i}_pointwise_conv")(net)
            net = layers.ReLU(name=f"layer{i}_pointwise_conv_relu")(bn(f"layer{i}_pointwise_conv_bn", net))
    embeddings = layers.GlobalAveragePooling2D(name="embeddings")(net)
    logits = layers.Dense(num_classes, use_bias=True, name=LOGITS)(embeddings)
    scores = layers.Activation("sigmoid", name="scores")(logits)
    return k.Model(inputs=patches, outputs=[scores, embeddings], name="yamnet")


def weighted_layers(model: Any) -> list[Any]:
    return [layer for layer in model.layers if layer.weights]


def _weight_label(variable: Any) -> str:
    return variable.path.rsplit("/", 1)[-1]


def save_yamnet_h5(model: Any, path: str | Path, dense_name: str = LOGITS) -> Path:
    """Write ``model``'s weights in YAMNet's ``yamnet.h5`` layout (Keras 2 HDF5, YAMNet's layer names)."""
    layers = []
    for layer in weighted_layers(model):
        name = dense_name if layer.name == LOGITS else yamnet_name(layer.name)
        # Keras 2 called a depthwise kernel 'depthwise_kernel'; Keras 3 calls it 'kernel'.
        labels = ["depthwise_kernel" if "depthwise" in layer.name and _weight_label(v) == "kernel"
                  else _weight_label(v) for v in layer.weights]
        layers.append((name, [(f"{name}/{label}:0", value) for label, value in zip(labels, layer.get_weights())]))
    return write_yamnet_h5(path, layers)


def write_yamnet_h5(path: str | Path, layers: list[tuple[str, list[tuple[str, np.ndarray]]]]) -> Path:
    """Write (layer name, [(weight name, array)]) in Keras 2's HDF5 weights layout.

    As in Keras 2 (and yamnet.h5), a name with ``/`` nests: ``layer1/conv/bn``'s
    group sits inside ``layer1/conv``'s.
    """
    import h5py  # noqa: PLC0415

    path = Path(path)
    with h5py.File(path, "w") as f:
        for name, weights in layers:
            group = f.require_group(name)
            group.attrs["weight_names"] = np.array([w.encode() for w, _a in weights])
            for wname, value in weights:
                group.create_dataset(wname, data=value)
        f.attrs["layer_names"] = np.array([name.encode() for name, _w in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4-tf"
    return path


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_yamnet_h5(path: str | Path) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """The file's layers that hold weights, in order: (layer name, [(weight name, array)])."""
    import h5py  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise YamnetWeightsError(f"{path}: YAMNet weights file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise YamnetWeightsError(f"{path}: not an HDF5 weights file ({exc})") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise YamnetWeightsError(f"{path}: HDF5 file without 'layer_names': not a Keras weights file "
                                     "in YAMNet's layout (yamnet.h5)")
        layers = []
        for raw in root.attrs["layer_names"]:
            name = _decode(raw)
            group = root[name]
            weight_names = [_decode(w) for w in group.attrs.get("weight_names", [])]
            if weight_names:
                layers.append((name, [(w, np.asarray(group[w])) for w in weight_names]))
        return layers


def load_yamnet_weights(model: Any, path: str | Path) -> None:
    """Assign a ``yamnet.h5``'s weights to ``model`` (``build_yamnet``); YamnetWeightsError naming the first misfit.

    Layers are matched in order; every layer but the last must carry YAMNet's
    name, the last (the classifier, unnamed in YAMNet's code) any name. Every
    shape is checked before the first assignment, so a bad file changes nothing.
    """
    layers = weighted_layers(model)
    found = read_yamnet_h5(path)
    plan = []
    for i, layer in enumerate(layers):
        expected = yamnet_name(layer.name)
        if i >= len(found):
            raise YamnetWeightsError(f"{path}: layer {expected!r} missing: the file has {len(found)} weighted layers, "
                                     f"YAMNet {len(layers)}")
        name, weights = found[i]
        if layer.name != LOGITS and name != expected:
            raise YamnetWeightsError(f"{path}: layer {i + 1} is {name!r}, YAMNet expects {expected!r}")
        want = [tuple(v.shape) for v in layer.weights]
        have = [tuple(a.shape) for _w, a in weights]
        if want != have:
            raise YamnetWeightsError(f"{path}: layer {name!r}: weight shapes {have}, YAMNet expects {want} "
                                     f"({', '.join(_weight_label(v) for v in layer.weights)})")
        plan.append((layer, [a for _w, a in weights]))
    if len(found) > len(layers):
        raise YamnetWeightsError(f"{path}: {len(found) - len(layers)} weighted layers more than YAMNet has "
                                 f"(first extra: {found[len(layers)][0]!r})")
    for layer, arrays in plan:
        layer.set_weights(arrays)


def read_class_map(path: str | Path) -> list[str]:
    """Display names from YAMNet's ``yamnet_class_map.csv`` (header ``index,mid,display_name``)."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise YamnetWeightsError(f"{path}: cannot read the class map ({exc})") from None
    if not rows or [c.strip() for c in rows[0]] != ["index", "mid", "display_name"]:
        raise YamnetWeightsError(f"{path}: class map must start with the header 'index,mid,display_name'")
    names = []
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != 3 or not row[0].strip().isdigit() or int(row[0]) != n - 2:
            raise YamnetWeightsError(f"{path}:{n}: expected 'index,mid,display_name' with index {n - 2}, got {row}")
        names.append(row[2])
    return names


def load_yamnet(weights_path: str | Path, class_map_path: str | Path) -> tuple[Any, list[str]]:
    """(model, class names) from a user's YAMNet files; YamnetWeightsError names what does not fit."""
    names = read_class_map(class_map_path)
    model = build_yamnet(num_classes=len(names))
    load_yamnet_weights(model, weights_path)
    return model, names
