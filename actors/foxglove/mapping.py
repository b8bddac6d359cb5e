"""Bus messages as Foxglove channels: the one mapping the live view and ``sensorium export`` share.

Pure: a ``Converter`` turns one decoded bus message into encoded Foxglove
messages on one or more channels (``ChannelDef``). It knows nothing of the
server or of files, so it is unit-tested alone and the live view and the
exported recording show the same channels.

| bus topic | Foxglove channel | schema |
| --- | --- | --- |
| ``camera.frame`` | ``camera.frame`` | ``foxglove.RawImage`` (protobuf, encoding ``bgr8``) |
| | ``camera.frame/compressed`` (when asked) | ``foxglove.CompressedImage`` (protobuf, JPEG) |
| ``detect.<signal>`` | ``detect.<signal>`` | the body as JSON |
| | ``detect.<signal>/annotations`` | ``foxglove.ImageAnnotations`` (protobuf): a box and a label per detection |
| ``sensor.imu`` | ``sensor.imu`` | the batch as JSON |
| | ``sensor.imu/sample`` | one JSON message per sample (``acc.x`` ... ``gyro.z``), for Plot panels |
| ``sys.actor``, ``monitor.alert`` | the topic | the body as JSON |
| | ``TOPIC/log`` | ``foxglove.Log`` (protobuf) |
| any other topic | the topic | the body as JSON |

JSON channels carry the body's JSON Schema from ``bus.schema`` (schema name
``sensorium.<Body class>``), adapted: an array field holds a list (nested
lists for 2-D), or, beyond ``max_array_elements`` elements, a summary
``{dtype, shape, min, max, mean}``; non-finite floats become null (JSON has
no NaN). Every JSON message also has ``_bus``: the envelope's ``src``,
``seq``, ``ts`` (ns). A topic with no typed body gets the permissive schema
``sensorium.Untyped``: every channel has a schema.

Times: a message is logged at its envelope ``ts`` (when the sender
published it). A RawImage's ``timestamp`` is the capture time, and the
annotations of a detection carry the timestamp of the frame they were
computed on (matched by ``frame_id`` over the last ``FRAME_MEMORY`` frames),
so the Image panel draws each box over its own frame.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from bus.envelope import Message
from bus.schema import ARRAY_KEYWORD, body_for_topic, json_schema

FRAME_MEMORY = 256
"""Camera frames whose capture time is remembered, to stamp the detections of each."""

IMAGE_FRAME = "camera"
"""The coordinate frame name of the camera images and their annotations."""


@dataclass(frozen=True)
class ChannelDef:
    """One Foxglove channel: what a viewer or an MCAP reader needs to decode it."""

    topic: str
    message_encoding: str
    """``json`` or ``protobuf``."""
    schema_name: str
    schema_encoding: str
    """``jsonschema``, ``protobuf``, or '' (a schemaless JSON channel)."""
    schema_data: bytes = field(repr=False)
    """The JSON Schema as UTF-8, or the protobuf FileDescriptorSet."""


@dataclass
class Output:
    channel: ChannelDef
    log_time_ns: int
    data: bytes


def _foxglove_messages() -> Any:
    try:
        import foxglove.messages as fm  # noqa: PLC0415 - the foxglove extra, only where a channel needs it
    except ImportError as exc:
        raise ImportError(f"{exc}: install the foxglove extra (pip install -e '.[foxglove]')") from None
    return fm


def _proto_channel(topic: str, message_class: str) -> ChannelDef:
    schema = getattr(_foxglove_messages(), message_class).get_schema()
    return ChannelDef(topic, "protobuf", schema.name, schema.encoding, bytes(schema.data))


# --------------------------------------------------------------------------- JSON


def json_value(value: Any, max_array_elements: int) -> Any:
    """A decoded body value as JSON: arrays as lists (or a summary beyond ``max_array_elements``),
    numpy scalars as numbers, non-finite floats as None, bytes as their length."""
    if isinstance(value, np.ndarray):
        if value.size > max_array_elements:
            return array_summary(value)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return json_value(value.astype(object).tolist(), max_array_elements)
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): json_value(v, max_array_elements) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v, max_array_elements) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": len(value)}
    return value


def array_summary(a: np.ndarray) -> dict[str, Any]:
    """What a viewer learns of an array too big to send as a list."""
    out: dict[str, Any] = {"dtype": a.dtype.name, "shape": list(a.shape)}
    if a.size and a.dtype.kind in "biuf":
        finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
        if finite.size:
            out.update(min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean()))
    return out


_SUMMARY_SCHEMA = {
    "type": "object", "description": "an array too big to list: its dtype, shape and value range",
    "properties": {"dtype": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                   "min": {"type": "number"}, "max": {"type": "number"}, "mean": {"type": "number"}},
}
_BUS_SCHEMA = {
    "type": "object", "description": "the bus envelope: sender, its seq on this topic, publish time (ns)",
    "properties": {"src": {"type": "string"}, "seq": {"type": "integer"}, "ts": {"type": "integer"}},
}


def _is_array_schema(prop: dict[str, Any]) -> bool:
    return ARRAY_KEYWORD in prop or any(ARRAY_KEYWORD in p for p in prop.get("anyOf", ()))


def foxglove_json_schema(cls: type) -> dict[str, Any]:
    """``bus.schema.json_schema(cls)`` as the Foxglove JSON channel carries it (arrays as lists)."""
    schema = json_schema(cls)
    props: dict[str, Any] = {}
    for name, prop in schema["properties"].items():
        if _is_array_schema(prop):
            shape = prop.get(ARRAY_KEYWORD) or prop["anyOf"][0][ARRAY_KEYWORD]
            prop = {"description": prop.get("description", ""), "x-ndarray": shape,
                    "anyOf": [{"type": "array"}, _SUMMARY_SCHEMA]}
        props[name] = prop
    props["_bus"] = _BUS_SCHEMA
    schema = {**schema, "title": f"sensorium.{cls.__name__}", "properties": props}
    schema.pop("$schema", None)  # Foxglove reads the schema itself; the draft keyword only confuses old readers
    return schema


def json_channel(topic: str, schema_of: str | None = None) -> ChannelDef:
    """The JSON channel of ``topic`` with the schema of ``schema_of``'s body (default: ``topic``)."""
    cls = body_for_topic(schema_of or topic)
    if cls is None:
        return ChannelDef(topic, "json", UNTYPED_SCHEMA["title"], "jsonschema", json.dumps(UNTYPED_SCHEMA).encode())
    schema = foxglove_json_schema(cls)
    return ChannelDef(topic, "json", schema["title"], "jsonschema", json.dumps(schema).encode())


UNTYPED_SCHEMA = {
    "title": "sensorium.Untyped", "type": "object", "additionalProperties": True,
    "description": "a topic with no typed body: the map as it was sent (arrays as lists or summaries)",
    "properties": {"_bus": _BUS_SCHEMA},
}
GAP_SCHEMA = {
    "title": "sensorium.Gap", "type": "object",
    "description": "messages the recorder saw missing (a jump in one sender's seq on one topic)",
    "properties": {"topic": {"type": "string"}, "src": {"type": "string"}, "after_seq": {"type": "integer"},
                   "next_seq": {"type": "integer"}, "missed": {"type": "integer"}},
}

IMU_SAMPLE_SCHEMA = {
    "title": "sensorium.ImuSample", "type": "object",
    "description": "one IMU sample of a sensor.imu batch, logged at its own time",
    "properties": {
        "t": {"type": "number", "description": "sample time, seconds (the source's clock)"},
        "acc": {"type": "object", "description": "acceleration, m/s²",
                "properties": {a: {"type": "number"} for a in "xyz"}},
        "gyro": {"type": "object", "description": "angular velocity, rad/s",
                 "properties": {a: {"type": "number"} for a in "xyz"}},
        "src": {"type": "string"},
    },
}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


# --------------------------------------------------------------------------- the converter


@dataclass
class ConverterOptions:
    compressed_images: bool = False
    jpeg_quality: int = 80
    max_array_elements: int = 4096


class Converter:
    """Bus messages -> encoded Foxglove messages. Keeps only what stamping the annotations needs."""

    def __init__(self, options: ConverterOptions | None = None) -> None:
        self.options = options or ConverterOptions()
        self._channels: dict[str, list[ChannelDef]] = {}
        self._frame_times: OrderedDict[int, int] = OrderedDict()

    def channels(self, topic: str) -> list[ChannelDef]:
        """The Foxglove channels a bus topic is shown on (computed once per topic)."""
        found = self._channels.get(topic)
        if found is None:
            found = self._channels[topic] = self._plan(topic)
        return found

    def _plan(self, topic: str) -> list[ChannelDef]:
        if topic == "camera.frame":
            out = [_proto_channel(topic, "RawImage")]
            if self.options.compressed_images:
                out.append(_proto_channel(f"{topic}/compressed", "CompressedImage"))
            return out
        if topic.startswith("detect."):
            return [json_channel(topic), _proto_channel(f"{topic}/annotations", "ImageAnnotations")]
        if topic == "sensor.imu":
            return [json_channel(topic), ChannelDef(f"{topic}/sample", "json", IMU_SAMPLE_SCHEMA["title"],
                                                    "jsonschema", json.dumps(IMU_SAMPLE_SCHEMA).encode())]
        if topic in ("sys.actor", "monitor.alert"):
            return [json_channel(topic), _proto_channel(f"{topic}/log", "Log")]
        return [json_channel(topic)]

    def convert(self, msg: Message, wanted: Callable[[ChannelDef], bool] = lambda c: True) -> list[Output]:
        """``msg`` on each of its channels that ``wanted`` accepts (the live view asks: has it a viewer?).

        Raises ValueError (a body that does not fit its topic: a bad image, boxes of the wrong shape)."""
        topic, ts = msg.topic, msg.header.ts
        self.observe(msg)  # even unwatched: the annotations of a later viewer need the frame's time
        out: list[Output] = []
        for ch in self.channels(topic):
            if not wanted(ch):
                continue
            if ch.topic.endswith("/sample"):
                out.extend(Output(ch, t, data) for t, data in self._imu_samples(msg))
                continue
            out.append(Output(ch, ts, self._encode(ch, msg)))
        return out

    def _encode(self, ch: ChannelDef, msg: Message) -> bytes:
        body = msg.body
        if ch.message_encoding == "json":
            value = json_value(body, self.options.max_array_elements)
            value["_bus"] = {"src": msg.header.src, "seq": msg.header.seq, "ts": msg.header.ts}
            return _dumps(value)
        name = ch.schema_name
        if name == "foxglove.RawImage":
            return self._raw_image(body, msg.header.ts)
        if name == "foxglove.CompressedImage":
            return self._jpeg(body, msg.header.ts)
        if name == "foxglove.ImageAnnotations":
            return self._annotations(body, msg.header.ts)
        if name == "foxglove.Log":
            return self._log(msg)
        raise ValueError(f"{ch.topic}: no encoder for {name}")

    # -- images ---------------------------------------------------------------

    def observe(self, msg: Message) -> None:
        """Remember a camera frame's capture time, to stamp its detections (cheap; call it for every frame)."""
        body = msg.body
        if msg.topic != "camera.frame" or not isinstance(body.get("frame_id"), int):
            return
        self._frame_times[body["frame_id"]] = self._capture_ns(body, msg.header.ts)
        while len(self._frame_times) > FRAME_MEMORY:
            self._frame_times.popitem(last=False)

    @staticmethod
    def _capture_ns(body: dict[str, Any], default_ns: int) -> int:
        t = body.get("t_capture_ns")
        return int(t) if isinstance(t, int) and t > 0 else default_ns

    @staticmethod
    def _image(body: dict[str, Any]) -> np.ndarray:
        img = body.get("image")
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"camera.frame: image is {getattr(img, 'dtype', type(img).__name__)} "
                             f"{getattr(img, 'shape', '')}, expected uint8 HxWx3 (BGR)")
        return img

    def _raw_image(self, body: dict[str, Any], ts: int) -> bytes:
        fm = _foxglove_messages()
        img = self._image(body)
        h, w, _ = img.shape
        return fm.RawImage(timestamp=_stamp(self._capture_ns(body, ts)), frame_id=IMAGE_FRAME, width=w, height=h,
                           encoding="bgr8", step=w * 3, data=np.ascontiguousarray(img).tobytes()).encode()

    def _jpeg(self, body: dict[str, Any], ts: int) -> bytes:
        import cv2  # noqa: PLC0415 - the vision extra, only for compressed images

        fm = _foxglove_messages()
        ok, jpeg = cv2.imencode(".jpg", self._image(body), [cv2.IMWRITE_JPEG_QUALITY, self.options.jpeg_quality])
        if not ok:
            raise ValueError("camera.frame: JPEG encoding failed")
        return fm.CompressedImage(timestamp=_stamp(self._capture_ns(body, ts)), frame_id=IMAGE_FRAME,
                                  data=jpeg.tobytes(), format="jpeg").encode()

    def _annotations(self, body: dict[str, Any], ts: int) -> bytes:
        fm = _foxglove_messages()
        boxes, scores = body.get("boxes"), body.get("scores")
        if not isinstance(boxes, np.ndarray) or boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"detect.*: boxes are {getattr(boxes, 'shape', type(boxes).__name__)}, expected Kx4")
        if not isinstance(scores, np.ndarray) or scores.shape != (boxes.shape[0],):
            raise ValueError(f"detect.*: scores are {getattr(scores, 'shape', type(scores).__name__)}, "
                             f"expected {boxes.shape[0]}")
        frame_ns = self._frame_times.get(body.get("frame_id"), ts)  # type: ignore[arg-type]
        stamp = _stamp(frame_ns)
        label = str(body.get("signal", ""))
        colour = fm.Color(r=1.0, g=0.2, b=0.2, a=1.0)
        points, texts = [], []
        for (x1, y1, x2, y2), score in zip(boxes.tolist(), scores.tolist()):
            points.append(fm.PointsAnnotation(
                timestamp=stamp, type=fm.PointsAnnotationType.LineLoop, thickness=2.0, outline_color=colour,
                points=[fm.Point2(x=x1, y=y1), fm.Point2(x=x2, y=y1), fm.Point2(x=x2, y=y2), fm.Point2(x=x1, y=y2)]))
            texts.append(fm.TextAnnotation(
                timestamp=stamp, position=fm.Point2(x=x1, y=max(0.0, y1 - 2.0)), text=f"{label} {score:.2f}".strip(),
                font_size=12.0, text_color=colour, background_color=fm.Color(r=0, g=0, b=0, a=0.6)))
        return fm.ImageAnnotations(timestamp=stamp, points=points, texts=texts).encode()

    # -- IMU ------------------------------------------------------------------

    def _imu_samples(self, msg: Message) -> list[tuple[int, bytes]]:
        body = msg.body
        t, acc, gyro = (np.asarray(body.get(k)) for k in ("t", "acc", "gyro"))
        if t.ndim != 1 or acc.shape != (t.size, 3) or gyro.shape != (t.size, 3):
            raise ValueError(f"sensor.imu: t {t.shape}, acc {acc.shape}, gyro {gyro.shape} do not fit together")
        if not t.size:
            return []
        # The batch was published just after its last sample: place each sample that far before ts.
        times = msg.header.ts - np.round((t[-1] - t) * 1e9).astype(np.int64)
        out = []
        for i in range(t.size):
            a, g = acc[i].tolist(), gyro[i].tolist()
            out.append((int(times[i]), _dumps(json_value({
                "t": float(t[i]), "acc": dict(zip("xyz", a)), "gyro": dict(zip("xyz", g)), "src": msg.header.src},
                0))))
        return out

    # -- logs -----------------------------------------------------------------

    def _log(self, msg: Message) -> bytes:
        fm = _foxglove_messages()
        level, name, text = log_line(msg.topic, msg.body)
        return fm.Log(timestamp=_stamp(msg.header.ts), level=getattr(fm.LogLevel, level), message=text,
                      name=name).encode()


def log_line(topic: str, body: dict[str, Any]) -> tuple[str, str, str]:
    """(LogLevel name, logger name, text) of a supervisor event or an alert."""
    if topic == "sys.actor":
        event, actor = str(body.get("event", "?")), str(body.get("actor", "?"))
        level = {"failed": "Error", "exited": "Warning" if body.get("exit") else "Info",
                 "restarting": "Warning"}.get(event, "Info")
        parts = [f"{actor} {event}"]
        if body.get("exit") is not None:
            parts.append(f"exit {body['exit']}")
        if body.get("attempt"):
            parts.append(f"attempt {body['attempt']}")
        if body.get("delay"):
            parts.append(f"in {body['delay']:.1f} s")
        if body.get("reason"):
            parts.append(str(body["reason"]))
        return level, f"supervisor/{actor}", ", ".join(parts)
    level = "Info" if body.get("state") == "cleared" else {
        "critical": "Error", "error": "Error", "warning": "Warning", "warn": "Warning"}.get(
        str(body.get("level", "")), "Info")
    text = f"{body.get('metric', '?')} {body.get('state', 'raised')}: value {body.get('value')} " \
           f"threshold {body.get('threshold')}"
    if body.get("message"):
        text += f": {body['message']}"
    return level, f"alert/{body.get('actor') or 'system'}", text


def _stamp(ns: int) -> Any:
    from foxglove.messages import Timestamp  # noqa: PLC0415

    return Timestamp(ns // 1_000_000_000, ns % 1_000_000_000)
