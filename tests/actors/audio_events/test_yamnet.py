"""The YAMNet architecture loads a weights file of yamnet.h5's layout and rejects wrong ones by name."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from actors.audio_events.yamnet import (EMBEDDING_SIZE, NUM_CLASSES, YamnetWeightsError, build_yamnet, load_yamnet,
                                  read_class_map, read_yamnet_h5, weighted_layers,
                                  write_yamnet_h5)


def test_the_architecture_is_yamnets(tf):
    model = build_yamnet()
    assert model.count_params() == 3_751_369  # YAMNet's parameter count (3.7 M; no gamma in its batch norms)
    layers = weighted_layers(model)
    assert len(layers) == 55  # 1 conv + 13 depthwise-separable blocks, each with batch norm, + logits
    scores, embeddings = model(np.zeros((2, 96, 64), np.float32))
    assert scores.shape == (2, NUM_CLASSES) and embeddings.shape == (2, EMBEDDING_SIZE)


def test_a_weights_file_of_yamnets_layout_loads_and_gives_the_same_outputs(yamnet_files):
    model, weights, class_map = yamnet_files
    with h5py.File(weights, "r") as f:  # the layout yamnet.h5 has
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names[:3] == ["layer1/conv", "layer1/conv/bn", "layer2/depthwise_conv"]
        assert [w.decode() for w in f["layer2/depthwise_conv"].attrs["weight_names"]] == \
            ["layer2/depthwise_conv/depthwise_kernel:0"]
    loaded, labels = load_yamnet(weights, class_map)
    assert labels[0] == "Class 0" and len(labels) == NUM_CLASSES
    x = np.random.default_rng(4).normal(-3, 2, (3, 96, 64)).astype(np.float32)
    for a, b in zip(model(x, training=False), loaded(x, training=False)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_a_whole_model_file_with_the_weights_under_model_weights_loads_too(yamnet_files, tmp_path):
    model, weights, class_map = yamnet_files
    whole = tmp_path / "yamnet_model.h5"
    with h5py.File(weights, "r") as f, h5py.File(whole, "w") as g:
        group = g.create_group("model_weights")
        for key in f:
            f.copy(f[key], group)
        group.attrs["layer_names"] = f.attrs["layer_names"]
        g.attrs["model_config"] = b"{}"
    loaded, _labels = load_yamnet(whole, class_map)
    x = np.random.default_rng(5).normal(-3, 2, (1, 96, 64)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model(x)[0]), np.asarray(loaded(x)[0]), rtol=1e-5, atol=1e-6)


def copy_without(src, dst, drop: str | None = None, narrow: str | None = None):
    """``src`` rewritten without layer ``drop``, or with layer ``narrow``'s kernel cut to half its outputs."""
    layers = [(name, [(w, a[..., : a.shape[-1] // 2] if name == narrow else a) for w, a in weights])
              for name, weights in read_yamnet_h5(src) if name != drop]
    return write_yamnet_h5(dst, layers)


def test_wrong_weight_files_are_rejected_naming_the_file_and_the_layer(yamnet_files, tmp_path):
    _model, weights, class_map = yamnet_files
    missing = copy_without(weights, tmp_path / "missing.h5", drop="layer5/pointwise_conv")
    with pytest.raises(YamnetWeightsError, match=r"missing\.h5: layer 17 is 'layer5/pointwise_conv/bn', "
                                                 r"YAMNet expects 'layer5/pointwise_conv'"):
        load_yamnet(missing, class_map)
    narrow = copy_without(weights, tmp_path / "narrow.h5", narrow="layer3/pointwise_conv")
    with pytest.raises(YamnetWeightsError, match=r"narrow\.h5: layer 'layer3/pointwise_conv': weight shapes "
                                                 r"\[\(1, 1, 64, 64\)\], YAMNet expects \[\(1, 1, 64, 128\)\]"):
        load_yamnet(narrow, class_map)
    not_h5 = tmp_path / "yamnet.h5"
    not_h5.write_bytes(b"this is not HDF5")
    with pytest.raises(YamnetWeightsError, match=r"yamnet\.h5: not an HDF5 weights file"):
        load_yamnet(not_h5, class_map)
    with pytest.raises(YamnetWeightsError, match="not found"):
        load_yamnet(tmp_path / "absent.h5", class_map)
    short_map = tmp_path / "map.csv"
    short_map.write_text("index,mid,display_name\n0,/m/0,Speech\n")  # 1 class: the logits do not fit
    with pytest.raises(YamnetWeightsError, match=r"layer 'logits': weight shapes \[\(1024, 521\), \(521,\)\], "
                                                 r"YAMNet expects \[\(1024, 1\), \(1,\)\]"):
        load_yamnet(weights, short_map)
    bad_map = tmp_path / "bad.csv"
    bad_map.write_text("index,mid,display_name\n0,/m/0,Speech\n5,/m/1,Music\n")
    with pytest.raises(YamnetWeightsError, match=r"bad\.csv:3: expected 'index,mid,display_name' with index 1"):
        read_class_map(bad_map)
