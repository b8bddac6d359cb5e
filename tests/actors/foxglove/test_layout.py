"""foxglove/layout.json: the shape Foxglove exports, every panel placed once, every topic one the live view
and the export really have, and the panel settings spelled as foxglove-sdk's layout types spell them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors.foxglove.mapping import Converter

pytest.importorskip("foxglove")
import foxglove.layouts as fl  # noqa: E402

LAYOUT = Path(__file__).resolve().parents[3] / "foxglove" / "layout.json"
BUS_TOPICS = ["camera.frame", "detect.circle", "detect.square", "detect.triangle", "sensor.imu",
              "speech.transcript", "gesture.recognized", "monitor.alert", "sys.actor"]


def leaves(node):
    if isinstance(node, str):
        return [node]
    return leaves(node["first"]) + leaves(node["second"])


def sdk_keys(config) -> set[str]:
    return set(json.loads(config.to_json()))


def test_the_layout_places_every_panel_once_on_real_channels():
    layout = json.loads(LAYOUT.read_text())
    assert {"configById", "layout", "globalVariables", "playbackConfig"} <= set(layout)
    placed = leaves(layout["layout"])
    assert sorted(placed) == sorted(layout["configById"])
    assert {p.split("!")[0] for p in placed} <= {"Image", "Plot", "RawMessages", "RosOut"}

    conv = Converter()
    channels = {c.topic for t in BUS_TOPICS for c in conv.channels(t)}
    fields = {"sensor.imu/sample": {"acc", "gyro"}}
    used = []
    for panel_id, config in layout["configById"].items():
        kind = panel_id.split("!")[0]
        if kind == "Image":
            mode = config["imageMode"]
            used += [mode["imageTopic"], *mode["annotations"]]
        elif kind == "Plot":
            for path in config["paths"]:
                topic, field, axis = path["value"].rsplit(".", 2)
                assert field in fields[topic] and axis in "xyz"
                used.append(topic)
        elif kind == "RawMessages":
            used.append(next(c for c in channels if config["topicPath"] == c or
                             config["topicPath"].startswith(c + ".")))
        else:
            used.append(config["topicToRender"])
    assert set(used) <= channels, set(used) - channels
    assert "camera.frame" in used and "sensor.imu/sample" in used and "monitor.alert/log" in used


def test_the_panel_settings_use_the_names_foxglove_sdk_gives_them():
    layout = json.loads(LAYOUT.read_text())["configById"]
    image = fl.ImageModeConfig(image_topic="x", annotations={"a": fl.ImageAnnotationSettings(visible=True)},
                               synchronize=False)
    assert set(layout["Image!camera"]["imageMode"]) <= sdk_keys(image)
    plot = fl.PlotConfig(paths=[fl.PlotSeries(value="v", enabled=True, timestamp_method="receiveTime", label="l")],
                         show_x_axis_labels=True, show_y_axis_labels=True, show_legend=True,
                         legend_display="floating", is_synced=True, x_axis_val="timestamp",
                         following_view_width=10)
    assert set(layout["Plot!acc"]) - {"title"} <= sdk_keys(plot)
    assert set(layout["Plot!acc"]["paths"][0]) <= set(json.loads(plot.to_json())["paths"][0])
    raw = fl.RawMessagesConfig(topic_path="t", diff_enabled=False, expansion="all")
    assert set(layout["RawMessages!transcript"]) <= sdk_keys(raw)
    log = fl.LogConfig(search_terms=[], min_log_level=1, topic_to_render="t")
    assert set(layout["RosOut!alerts"]) <= sdk_keys(log)
